/**
 * The HTTP/2 numbers the sidecar sends and reads: error codes of RST_STREAM and GOAWAY
 * (RFC 9113 §7) and the END_STREAM flag of a HEADERS frame (§6.2). They are the values
 * node:http2's `constants` give (NGHTTP2_NO_ERROR, ...; h2-codes.test.ts checks), written here
 * so that the modules that use them load without node:http2 (a sidecar never loads it).
 */
export const NGHTTP2_NO_ERROR = 0x0;
export const NGHTTP2_INTERNAL_ERROR = 0x2;
export const NGHTTP2_REFUSED_STREAM = 0x7;
export const NGHTTP2_CANCEL = 0x8;
export const NGHTTP2_FLAG_END_STREAM = 0x1;
