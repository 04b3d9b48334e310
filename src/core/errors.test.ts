import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { errorCodes, IsthmusError } from './errors.js';

// docs/errors.md is what users search when they see a code; it must list exactly the codes we have.
test('docs/errors.md lists every error code and no code that does not exist', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const documented = new Set([...doc.matchAll(/^\| `(ISTHMUS_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]));
  expect([...documented].sort()).toEqual(Object.keys(errorCodes).sort());
});

test('every code follows ISTHMUS_ERR_<AREA>_<WHAT> and carries an HTTP status', () => {
  for (const [code, { status }] of Object.entries(errorCodes)) {
    expect(code).toMatch(/^ISTHMUS_ERR_[A-Z]+_[A-Z_]+$/);
    expect(status).toBeGreaterThanOrEqual(400);
  }
  const err = new IsthmusError('ISTHMUS_ERR_CLUSTER_UNKNOWN', 'no cluster named x');
  expect(err.status).toBe(404);
  expect(err.toJSON()).toEqual({ code: 'ISTHMUS_ERR_CLUSTER_UNKNOWN', message: 'no cluster named x' });
});
