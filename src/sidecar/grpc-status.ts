/**
 * What a gRPC client is told when the sidecar itself answers. gRPC clients expect a
 * "trailers-only" response (HTTP status 200, grpc-status and grpc-message in the only HEADERS
 * frame) and turn any other HTTP status into a code of their own with no message; so for gRPC
 * requests the sidecar's errors become grpc-status codes and the message goes in grpc-message.
 * Pure: src/sidecar/grpc-status.test.ts.
 */

/** application/grpc, application/grpc+proto, application/grpc-web… (gRPC over HTTP/2, "Requests"). */
export function isGrpc(contentType: string | string[] | undefined): boolean {
  return typeof contentType === 'string' && /^application\/grpc(?:[+;-]|$)/i.test(contentType);
}

/** Milliseconds per unit of `grpc-timeout` (gRPC over HTTP/2, "Requests": Timeout). */
const grpcTimeoutUnits: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * A gRPC call's deadline from its `grpc-timeout` field, in milliseconds: at most eight digits
 * and a unit (`H`, `M`, `S`, `m`, `u`, `n`); undefined when absent or malformed.
 */
export function grpcTimeoutMs(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  return match ? Number(match[1]) * (grpcTimeoutUnits[match[2] as string] as number) : undefined;
}

/** How long after a gRPC deadline a sidecar still waits: time for the caller's own cancel to arrive and win. */
const grpcDeadlineGraceMs = 1000;

/**
 * How long a sidecar waits for the answer's head, from the request's end: `configuredMs`
 * (timeouts.responseHeaders), except for a gRPC call that carries a deadline, whose caller
 * decides: it is waited for until its deadline and a grace second (a caller that allows a
 * five-minute call is not cut at 60 s; one that allows 100 ms cancels the stream itself, and the
 * cancel passes on). An operator's route timeout (an HTTPRoute rule's) is not replaced by it:
 * where one applies, callers use it and do not ask.
 */
export function headWaitMs(configuredMs: number, grpcTimeout: string | string[] | undefined): number {
  const deadline = grpcTimeoutMs(grpcTimeout);
  return deadline === undefined ? configuredMs : deadline + grpcDeadlineGraceMs;
}

export const grpcCodes = { OK: 0, UNKNOWN: 2, PERMISSION_DENIED: 7, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

/**
 * gRPC's own HTTP→gRPC table ("HTTP to gRPC Status Code Mapping" in the gRPC docs) for the
 * statuses our errors use, plus two it leaves as UNKNOWN where a better code exists: 500 is an
 * INTERNAL error of the sidecar, 501 a protocol it does not carry (UNIMPLEMENTED).
 */
export function grpcStatusOf(httpStatus: number): number {
  switch (httpStatus) {
    case 400: return grpcCodes.INTERNAL;
    case 401: return grpcCodes.UNAUTHENTICATED;
    case 403: return grpcCodes.PERMISSION_DENIED;
    case 404: return grpcCodes.UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return grpcCodes.UNAVAILABLE;
    case 500: return grpcCodes.INTERNAL;
    case 501: return grpcCodes.UNIMPLEMENTED;
    default: return grpcCodes.UNKNOWN;
  }
}

/**
 * The HTTP status a non-gRPC caller gets for a gRPC status code (a FaultInjection abort with
 * grpcStatus): the inverse of the table above where it has one (gRPC's "Status codes and their
 * use in gRPC": UNAVAILABLE is 503, DEADLINE_EXCEEDED 504, RESOURCE_EXHAUSTED 429), else 500.
 */
export function httpStatusOfGrpc(grpcStatus: number): number {
  switch (grpcStatus) {
    case 0: return 200;
    case 4: return 504;
    case 7: return 403;
    case 8: return 429;
    case 12: return 501;
    case 14: return 503;
    case 16: return 401;
    default: return 500;
  }
}

/**
 * The gRPC statuses that say the server (or what stands for it) failed, as 5xx answers do: those
 * whose HTTP equivalent in google.rpc.Code (googleapis, google/rpc/code.proto) is a 5xx —
 * UNKNOWN 500, DEADLINE_EXCEEDED 504, UNIMPLEMENTED 501, INTERNAL 500, UNAVAILABLE 503,
 * DATA_LOSS 500. The others are the caller's doing or an answer (CANCELLED, INVALID_ARGUMENT,
 * NOT_FOUND, PERMISSION_DENIED, RESOURCE_EXHAUSTED 429…), as a 4xx is. Pure: grpc-status.test.ts.
 */
export function grpcServerError(grpcStatus: number): boolean {
  return grpcStatus === 2 || grpcStatus === 4 || grpcStatus === 12 || grpcStatus === 13 || grpcStatus === 14 || grpcStatus === 15;
}

/** grpc-message is percent-encoded UTF-8: every byte outside 0x20–0x7E, and '%' itself (PROTOCOL-HTTP2, "Responses"). */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
