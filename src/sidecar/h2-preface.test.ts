import { expect, test } from 'vitest';
import { h2Preface, sniffPreface, type SniffedProtocol } from './h2-preface.js';

const settingsFrame = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
const table: [string, Buffer, SniffedProtocol][] = [
  ['nothing yet', Buffer.alloc(0), 'undecided'],
  ['the preface alone', h2Preface, 'h2'],
  ['the preface and a SETTINGS frame in one read', Buffer.concat([h2Preface, settingsFrame]), 'h2'],
  ['the first 3 bytes of the preface', h2Preface.subarray(0, 3), 'undecided'],
  ['all but the last byte of the preface', h2Preface.subarray(0, 23), 'undecided'],
  ['an HTTP/1.1 GET', Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n'), 'http1'],
  ['one byte of an HTTP/1.1 POST', Buffer.from('P'), 'undecided'],
  ['an HTTP/1.1 POST', Buffer.from('POST /echo HTTP/1.1\r\n'), 'http1'],
  ['a CONNECT', Buffer.from('CONNECT ledger.demo.mesh:80 HTTP/1.1\r\n'), 'http1'],
  ['an HTTP/1.1 request with the method PRI', Buffer.from('PRI * HTTP/1.1\r\n\r\n'), 'http1'],
  ['a TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5]), 'http1'],
];

test.each(table)('%s → %s', (_what, bytes, expected) => {
  expect(sniffPreface(bytes)).toBe(expected);
});
