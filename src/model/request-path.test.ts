import { describe, expect, test } from 'vitest';
import { normaliseRequestPath } from './request-path.js';

describe('normaliseRequestPath', () => {
  test.each([
    ['/', '/', ''],
    ['/admin', '/admin', ''],
    ['/admin/', '/admin/', ''],
    // query and fragment are cut off before matching; the query is kept for the app
    ['/admin?x=1', '/admin', '?x=1'],
    ['/admin?x=/../y', '/admin', '?x=/../y'],
    ['/admin#frag', '/admin', ''],
    ['/admin?x=1#frag', '/admin', '?x=1'],
    ['/public#/../admin', '/public', ''],
    // dot segments
    ['/public/../admin', '/admin', ''],
    ['/public/./admin', '/public/admin', ''],
    ['/./admin', '/admin', ''],
    ['/../admin', '/admin', ''],
    ['/../../../admin', '/admin', ''],
    ['/a/b/../../admin', '/admin', ''],
    ['/a/..', '/', ''],
    ['/a/.', '/a/', ''],
    ['/a/b/..', '/a/', ''],
    // percent-escapes of unreserved characters are decoded, so encoded dots are dot segments
    ['/public/%2e%2e/admin', '/admin', ''],
    ['/public/%2E%2E/admin', '/admin', ''],
    ['/public/.%2e/admin', '/admin', ''],
    ['/%2e/admin', '/admin', ''],
    ['/%61dmin', '/admin', ''],
    ['/%41dmin', '/Admin', ''],
    ['/a%7Eb', '/a~b', ''],
    ['/a%2db%5fc', '/a-b_c', ''],
    // other escapes are kept, hex upper-cased
    ['/a%20b', '/a%20b', ''],
    ['/a%3fb', '/a%3Fb', ''],
    ['/a%25b', '/a%25b', ''],
    ['/a%252e%252e/admin', '/a%252e%252e/admin', ''],
    // slashes merged
    ['//admin', '/admin', ''],
    ['/public//admin', '/public/admin', ''],
    ['///a///b///', '/a/b/', ''],
    ['/a//../b', '/b', ''],
    ['/a/.//./b', '/a/b', ''],
    // case is kept: paths are case-sensitive
    ['/ADMIN', '/ADMIN', ''],
    ['/Admin/../admin', '/admin', ''],
    // dots inside a segment are fine
    ['/file.json', '/file.json', ''],
    ['/.well-known/x', '/.well-known/x', ''],
    ['/a.b/c', '/a.b/c', ''],
  ])('%s → %s', (target, path, query) => {
    expect(normaliseRequestPath(target)).toEqual({ path, query });
  });

  test.each([
    ['/public%2Fadmin', /escaped slash/],
    ['/public%2fadmin', /escaped slash/],
    ['/public%2F..%2Fadmin', /escaped slash/],
    ['/public%5Cadmin', /escaped backslash/],
    ['/public%5c..%5cadmin', /escaped backslash/],
    ['/public\\..\\admin', /backslash/],
    ['/admin%', /malformed/],
    ['/admin%2', /malformed/],
    ['/admin%zz', /malformed/],
    ['/admin%%32%65', /malformed/],
    ['/admin\u0000', /control/],
    ['/admin\t', /control/],
    ['/admin\u007f', /control/],
    ['/admin.', /ends in a dot/],
    ['/admin..', /ends in a dot/],
    ['/admin...', /ends in a dot/],
    ['/admin%2e', /ends in a dot/],
    ['/admin./x', /ends in a dot/],
    ['admin', /must start with/],
    ['*', /must start with/],
    ['', /must start with/],
  ])('%s is refused', (target, reason) => {
    const result = normaliseRequestPath(target);
    expect('refused' in result ? result.refused : result).toMatch(reason);
  });

  test('normalising twice changes nothing (what the app is given is what was matched)', () => {
    for (const target of ['/public/../admin', '/%2e%2e//a/./b/', '/a%20b/%41', '///', '/a/b/..']) {
      const once = normaliseRequestPath(target);
      if (!('path' in once)) throw new Error(`${target} was refused`);
      expect(normaliseRequestPath(once.path)).toEqual({ path: once.path, query: '' });
    }
  });
});
