import { constants } from 'node:http2';
import { expect, test } from 'vitest';
import * as codes from './h2-codes.js';

test('the HTTP/2 codes written in h2-codes.ts are node:http2\'s own', () => {
  expect(Object.keys(codes).length).toBeGreaterThan(0);
  for (const [name, value] of Object.entries(codes)) expect(value, name).toBe((constants as unknown as Record<string, number>)[name]);
});
