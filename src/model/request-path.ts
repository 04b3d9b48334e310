/**
 * The one normalisation of a request's path before authorization matches it, and the path the
 * app is then given (docs/authorization.md, "Paths"). What is matched is what the app gets: a
 * rule can only be fooled if the app reads a path differently from the matcher, so the inbound
 * forwards the normalised path, as Envoy does with `normalize_path` on.
 *
 * The steps, in order (Envoy's `normalize_path` then `merge_slashes`, with its escaped-slash
 * action set to reject):
 * 1. the fragment (`#...`) and the query (`?...`) are cut off; the query is kept for the app;
 * 2. refused: a path that does not start with `/`, control characters, a raw backslash, a
 *    malformed percent-escape, and an escaped slash or backslash (`%2F`, `%5C`, any case):
 *    apps disagree on whether `%2F` separates segments, so there is no one safe meaning;
 * 3. percent-escapes of unreserved characters (RFC 3986 §2.3: letters, digits, `-._~`) are
 *    decoded (`%2e` is `.`, `%41` is `A`); other escapes are kept, their hex upper-cased
 *    (RFC 3986 §6.2.2.1);
 * 4. runs of `/` are merged into one (an empty segment is dropped before `..` applies, so
 *    `/a//../b` is `/b`; Envoy resolves dots first and makes it `/a/b`; either is safe, since
 *    the app is given the same path that was matched);
 * 5. `.` and `..` segments are resolved (RFC 3986 §5.2.4; `..` above the root stays at the root);
 * 6. refused: a segment that ends in a dot (`/admin.`), which some servers read as the name
 *    without it.
 * Paths are case-sensitive (RFC 3986 §6.2.2.1 leaves the path's case alone): `/Admin` is not
 * `/admin`. Pure; `request-path.test.ts` covers every step.
 */
export type NormalisedPath =
  | { path: string; query: string }
  | { refused: string };

const unreserved = /[A-Za-z0-9\-._~]/;

export function normaliseRequestPath(target: string): NormalisedPath {
  let raw = target;
  const fragment = raw.indexOf('#');
  if (fragment >= 0) raw = raw.slice(0, fragment);
  const q = raw.indexOf('?');
  const query = q >= 0 ? raw.slice(q) : '';
  if (q >= 0) raw = raw.slice(0, q);
  if (!raw.startsWith('/')) return { refused: 'the request path must start with /' };

  let decoded = '';
  for (let i = 0; i < raw.length; i += 1) {
    const c = raw.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return { refused: 'the request path holds a control character' };
    if (c === 0x5c) return { refused: 'the request path holds a backslash' };
    if (c !== 0x25) {
      decoded += raw[i];
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { refused: 'the request path holds a malformed percent-escape' };
    const upper = hex.toUpperCase();
    if (upper === '2F' || upper === '5C') return { refused: `the request path holds an escaped ${upper === '2F' ? 'slash (%2F)' : 'backslash (%5C)'}, which servers read in different ways` };
    const char = String.fromCharCode(Number.parseInt(upper, 16));
    decoded += unreserved.test(char) ? char : `%${upper}`;
    i += 2;
  }

  const segments: string[] = [];
  const parts = decoded.split('/');
  for (let i = 1; i < parts.length; i += 1) {
    const part = parts[i] as string;
    const last = i === parts.length - 1;
    if (part === '.' || part === '..') {
      if (part === '..') segments.pop();
      // `/a/.` and `/a/..` name a directory: keep the trailing slash (RFC 3986 §5.2.4).
      if (last) segments.push('');
      continue;
    }
    // Merged slashes: an empty segment only stands for a trailing slash.
    if (part === '' && !last) continue;
    if (part.endsWith('.')) return { refused: `the path segment "${part}" ends in a dot, which some servers drop` };
    segments.push(part);
  }
  return { path: `/${segments.join('/')}`, query };
}
