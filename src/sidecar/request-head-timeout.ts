import type { Duplex } from 'node:stream';
import { channels, type RequestRefusedMessage } from '../core/channels.js';
import type { H1Request, H1Response } from './h1-server.js';
import { errorResponse } from './http-head.js';

/**
 * `timeouts.requestHeaders` for HTTP/1.1: Node's server measures it (`headersTimeout`, from a
 * connection's start or a request's first byte) and reports ERR_HTTP_REQUEST_TIMEOUT; the caller
 * gets 408 with the code. HTTP/2 connections (outbound-h2.ts, inbound-h2.ts) must open their first
 * stream within the same time, or are closed with GOAWAY (NO_ERROR, last-stream-id 0: nothing was
 * processed) whose debug data names the code.
 */
const code = 'ISTHMUS_ERR_DATAPLANE_REQUEST_HEADERS_TIMEOUT';
const malformed = 'ISTHMUS_ERR_DATAPLANE_REQUEST_MALFORMED';
const unsupported = 'ISTHMUS_ERR_DATAPLANE_PROTOCOL_UNSUPPORTED';

/**
 * An HTTP/1.1 server's `clientError`: a head that took too long gets 408, bytes that are not
 * HTTP/1.1 get 400 (431 for a head over Node's size limit), each with a code that says which; a
 * connection already reset by the caller is just closed. Node's parser (llhttp, strict) is what
 * refuses the request-smuggling shapes (Content-Length with Transfer-Encoding, two lengths,
 * obs-fold, bare CR, bad chunk sizes), before any of it is forwarded. Each refusal is published
 * on `channels.requestRefused` (isthmus_requests_refused_total) with `origin` and `listener`.
 */
export function clientErrorHandler(origin: object, listener: RequestRefusedMessage['listener']): (err: NodeJS.ErrnoException, socket: Duplex) => void {
  return (err, socket) => {
    // A caller that is gone (reset, or its connection no longer writable) is not refused: nobody is told.
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const reason: RequestRefusedMessage['reason'] = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'head_timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? 'header_too_large' : 'malformed';
    if (channels.requestRefused.hasSubscribers) channels.requestRefused.publish({ origin, listener, reason });
    if (reason === 'head_timeout') return answerHeadTimeout(socket);
    refuseMalformed(socket, reason === 'header_too_large', `(${err.code ?? err.message})`);
  };
}

/**
 * A 400 (or 431) with ISTHMUS_ERR_DATAPLANE_REQUEST_MALFORMED; the connection is closed, so
 * nothing that followed the bad head on it is read as another request.
 */
export function refuseMalformed(socket: Duplex, tooLarge: boolean, detail: string): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(errorResponse(tooLarge ? 431 : 400, tooLarge ? 'Request Header Fields Too Large' : 'Bad Request', malformed,
    `${tooLarge ? 'the request head is larger than the sidecar accepts' : 'these bytes are not an HTTP/1.1 request'} ${detail}; send HTTP/1.1, or HTTP/2 with prior knowledge`));
}

/** The 408 a caller gets when its HTTP/1.1 head did not arrive in time; the connection is closed. */
export function answerHeadTimeout(socket: Duplex): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(errorResponse(408, 'Request Timeout', code, 'no complete request head within timeouts.requestHeaders'));
}

/** How often Node's HTTP/1.1 server looks for heads past `headersTimeout` (its default, 30 s, would stretch a 10 s limit to 40 s). */
export function headersCheckInterval(requestHeadersMs: number): number {
  return Math.min(30_000, Math.max(250, Math.floor(requestHeadersMs / 2)));
}

/**
 * An HTTP/1.1 server's `checkExpectation`: a request whose Expect is not 100-continue (RFC 9110
 * §10.1.1) gets 417 with ISTHMUS_ERR_DATAPLANE_PROTOCOL_UNSUPPORTED and a message naming the
 * expectation; without this Node answers a bare 417 no caller can tell from the app's. The
 * request is not forwarded; Node discards its body and the connection stays usable.
 */
export function answerUnknownExpectation(req: H1Request, res: H1Response): void {
  const expectation = String(req.headers.expect).slice(0, 100);
  const body = JSON.stringify({ error: { code: unsupported, message: `the sidecar cannot meet the expectation ${JSON.stringify(expectation)}; send Expect: 100-continue or no Expect field` } });
  res.writeHead(417, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-isthmus-error': unsupported });
  res.end(body);
}
