/**
 * A time as text in UTC, the way `Date#toISOString` and `Date#toUTCString` write it, made from
 * the UTC fields alone.
 *
 * V8's own two methods read the time-zone data in Node's ICU tables on their first call, though
 * neither needs a zone: in a fresh node, `new Date().toISOString()` left 640 KB more of the node
 * binary resident than `Date.now()` or the UTC getters (the ICU data's zone, metaZone and
 * time-zone-type tables and their neighbours; docs/benchmark-history.md, "2026-12-07 04:40 UTC").
 * A sidecar wrote its certificate's dates, its HTTP Date fields and a log field or two with them,
 * and so carried those pages for nothing. Years outside 0–9999 (never a certificate's or a
 * clock's) are left to V8.
 */

const weekdays = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const two = (n: number) => (n < 10 ? `0${n}` : String(n));

function dateOf(time: number | Date): Date | undefined {
  const date = typeof time === 'number' ? new Date(time) : time;
  if (Number.isNaN(date.getTime())) throw new RangeError('Invalid time value');
  const year = date.getUTCFullYear();
  return year >= 0 && year <= 9999 ? date : undefined;
}

/** `2026-12-07T04:41:21.000Z`: what `toISOString()` (and JSON) writes for a Date. */
export function isoTime(time: number | Date): string {
  const d = dateOf(time);
  if (d === undefined) return new Date(time).toISOString();
  const ms = d.getUTCMilliseconds();
  return `${String(d.getUTCFullYear()).padStart(4, '0')}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())}`
    + `T${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}.${ms < 10 ? `00${ms}` : ms < 100 ? `0${ms}` : ms}Z`;
}

/** `Mon, 07 Dec 2026 04:41:21 GMT`: an HTTP date (RFC 9110's IMF-fixdate), what `toUTCString()` writes. */
export function httpDate(time: number | Date): string {
  const d = dateOf(time);
  if (d === undefined) return new Date(time).toUTCString();
  return `${weekdays[d.getUTCDay()]}, ${two(d.getUTCDate())} ${months[d.getUTCMonth()]} ${String(d.getUTCFullYear()).padStart(4, '0')} `
    + `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} GMT`;
}

let nowText = '';
let nowSecond = Number.NaN;
/** The HTTP Date field for now, made at most once a second. */
export function httpDateNow(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== nowSecond) {
    nowSecond = second;
    nowText = httpDate(now);
  }
  return nowText;
}
