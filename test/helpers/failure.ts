import { isIsthmusError } from '../../src/core/errors.js';

/** What `fn` threw, as code and message; `did not throw` when it returned. */
export function failure(fn: () => unknown): { code?: string; message: string } {
  try {
    fn();
  } catch (err) {
    return { code: isIsthmusError(err) ? err.code : undefined, message: (err as Error).message };
  }
  return { message: 'did not throw' };
}
