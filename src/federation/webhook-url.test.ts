import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { resolveWebhookUrl } from './webhook-url.js';

const dir = mkdtempSync(join(tmpdir(), 'isthmus-webhook-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('an objective\'s webhook URL, read by reference when a federation pages', () => {
  test('from an environment variable or the first line of a file, trimmed', () => {
    expect(resolveWebhookUrl({ env: 'HOOK' }, { HOOK: ' https://hooks.example/T/B/secret \n' })).toBe('https://hooks.example/T/B/secret');
    const file = join(dir, 'url');
    writeFileSync(file, 'http://127.0.0.1:9/page\nanything after the first line is ignored\n');
    expect(resolveWebhookUrl({ file })).toBe('http://127.0.0.1:9/page');
  });

  test.each([
    [{ env: 'HOOK' }, {}, /environment variable HOOK is empty or missing on this federation's host/],
    [{ env: 'HOOK' }, { HOOK: 'ftp://x' }, /environment variable HOOK does not hold an http\(s\) URL/],
    [{ file: '/nonexistent/isthmus-hook' }, {}, /cannot read the webhook URL from file \/nonexistent\/isthmus-hook/],
  ])('%j is an error that names where it looked', (reference, env, message) => {
    expect(() => resolveWebhookUrl(reference as { env: string } | { file: string }, env)).toThrow(message);
  });
});
