import * as grpc from '@grpc/grpc-js';
import type { SampleInstance } from './sample-service.js';

/**
 * The dev mesh's gRPC sample, `grpc-echo`: a gRPC server over h2c (its sidecar has
 * `inbound.appProtocol: h2c`), to try gRPC through the mesh. The service is defined by hand, with
 * JSON messages, so no .proto file or code generator is needed; any gRPC client can call it with
 * this definition (`echoServiceDefinition`, and `EchoClient` below).
 *
 * - `/isthmus.dev.Echo/Echo` (unary): answers `{ message, cluster, instance, caller, metadata,
 *   cancelledStreams }`; request metadata `x-echo-status: <code>` makes it fail with that gRPC
 *   status instead, its message the request's (to see errors cross the mesh intact).
 *   `cancelledStreams` counts the EchoStream calls their caller cancelled (to see a cancel cross it).
 * - `/isthmus.dev.Echo/EchoStream` (bidirectional): answers every message as it arrives, in order.
 */
export interface EchoRequest { message: string }
export interface EchoReply { message: string; cluster: string; instance: string; caller: string | null; metadata: Record<string, string>; cancelledStreams: number }

const json = {
  serialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer) => JSON.parse(bytes.toString('utf8')) as never,
};
const method = (name: string, streaming: boolean) => ({
  path: `/isthmus.dev.Echo/${name}`, requestStream: streaming, responseStream: streaming, originalName: name,
  requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize,
});
export const echoServiceDefinition = { Echo: method('Echo', false), EchoStream: method('EchoStream', true) } as grpc.ServiceDefinition;

/** A client class for the echo service: `new EchoClient('127.0.0.1:15102', grpc.credentials.createInsecure())`. */
export const EchoClient = grpc.makeGenericClientConstructor(echoServiceDefinition, 'Echo');

export async function startGrpcEchoInstance(opts: { service: string; cluster: string; zone: string; instance: string; host: string; port: number }): Promise<SampleInstance> {
  const server = new grpc.Server();
  let cancelledStreams = 0;
  const reply = (call: grpc.ServerUnaryCall<EchoRequest, EchoReply> | grpc.ServerDuplexStream<EchoRequest, EchoReply>, message: string): EchoReply => ({
    message, cluster: opts.cluster, instance: opts.instance,
    caller: String(call.metadata.get('x-forwarded-client-cert')[0] ?? '') || null,
    metadata: Object.fromEntries(Object.entries(call.metadata.getMap()).filter(([k]) => k.startsWith('x-echo-')).map(([k, v]) => [k, String(v)])),
    cancelledStreams,
  });
  server.addService(echoServiceDefinition, {
    Echo: (call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) => {
      const status = Number(call.metadata.get('x-echo-status')[0] ?? 0);
      if (status > 0) {
        const trailer = new grpc.Metadata();
        trailer.set('x-echo-where', `${opts.cluster}/${opts.instance}`);
        return callback({ code: status, details: call.request.message, metadata: trailer });
      }
      callback(null, reply(call, call.request.message));
    },
    EchoStream: (call: grpc.ServerDuplexStream<EchoRequest, EchoReply>) => {
      call.on('data', (request: EchoRequest) => call.write(reply(call, request.message)));
      call.on('end', () => call.end());
      call.on('cancelled', () => { cancelledStreams += 1; });
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${opts.host}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  return {
    ...opts,
    address: `${opts.host}:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.forceShutdown();
      resolve();
    }),
  };
}
