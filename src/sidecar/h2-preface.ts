/**
 * An app that speaks HTTP/2 over cleartext "with prior knowledge" starts its connection with
 * this preface (RFC 9113 §3.4); an HTTP/1.1 request line never does. The outbound proxy port
 * and the fixed listeners look at the first bytes of each connection to decide which server
 * gets it. Pure: src/sidecar/h2-preface.test.ts.
 */
export const h2Preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** `undecided`: every byte so far matches the preface, but it is not complete yet. */
export type SniffedProtocol = 'h2' | 'http1' | 'undecided';

export function sniffPreface(bytes: Buffer): SniffedProtocol {
  const n = Math.min(bytes.length, h2Preface.length);
  // One differing byte is enough: an HTTP/1.1 method never starts like the preface for long.
  if (bytes.compare(h2Preface, 0, n, 0, n) !== 0) return 'http1';
  return n === h2Preface.length ? 'h2' : 'undecided';
}
