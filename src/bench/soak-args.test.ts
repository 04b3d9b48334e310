import { expect, test } from 'vitest';
import { parseSoakArgs } from './soak-args.js';

test('the soak takes its defaults, bounded flags and --help', () => {
  expect(parseSoakArgs([])).toEqual({ seconds: 600, rps: 20, warmUpSeconds: 15, hostBase: 145, output: 'table' });
  expect(parseSoakArgs(['--seconds', '120', '--rps', '50', '--warm-up', '0', '--host-base', '90', '-o', 'json'])).toEqual({ seconds: 120, rps: 50, warmUpSeconds: 0, hostBase: 90, output: 'json' });
  expect(parseSoakArgs(['--help'])).toBe('help');
  expect(parseSoakArgs(['-h'])).toBe('help');
});

test.each([
  [['--seconds', 'ten'], /--seconds must be an integer from 10 to 86400, not "ten"/],
  [['--rps', '0'], /--rps must be an integer from 1 to 500, not "0"/],
  [['--host-base', '251'], /--host-base must be an integer from 1 to 250/],
  [['--output', 'yaml'], /--output must be "table" or "json", not "yaml"/],
  [['--minutes', '5'], /Unknown option '--minutes'/],
])('%j is refused with a message naming the flag and the usage', (argv, message) => {
  expect(() => parseSoakArgs(argv)).toThrow(message);
  expect(() => parseSoakArgs(argv)).toThrow(/usage: npm run soak/);
});
