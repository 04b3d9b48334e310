import { describe, expect, test } from 'vitest';
import { parseLabels } from './register.js';

describe('isthmus register --label', () => {
  test.each([
    [['version=v2'], { version: 'v2' }],
    [['version=v1', 'track=canary', 'app.kubernetes.io/name=hello'], { version: 'v1', track: 'canary', 'app.kubernetes.io/name': 'hello' }],
    [['version=v1', 'version=v2'], { version: 'v2' }],
    [['empty='], { empty: '' }],
  ])('%j → %j', (flags, expected) => {
    expect(parseLabels(flags)).toEqual(expected);
  });

  test.each([['version'], ['=v2'], ['version=v 2'], ['-x=1'], [`k=${'a'.repeat(64)}`]])('%s is refused naming the flag', (flag) => {
    expect(() => parseLabels([flag])).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_CONFIG_INVALID', message: expect.stringContaining(`--label "${flag}"`) }));
  });
});
