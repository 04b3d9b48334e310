import { expect, test } from 'vitest';
import { compareText } from './compare-text.js';

test('orders by code units, whatever the locale', () => {
  const names = ['ledger', 'Ledger', 'hello-v2', 'hello', 'hello.v1', 'demo/b', 'demo-a/z', '10.0.0.2:80', '10.0.0.10:80', 'zeta', 'émile'];
  // localeCompare would put 'Ledger' beside 'ledger', '10.0.0.10:80' after '10.0.0.2:80' in some
  // locales and 'émile' before 'zeta'; code-unit order is the same on every machine.
  expect([...names].sort(compareText)).toEqual(['10.0.0.10:80', '10.0.0.2:80', 'Ledger', 'demo-a/z', 'demo/b', 'hello', 'hello-v2', 'hello.v1', 'ledger', 'zeta', 'émile']);
  expect(compareText('a', 'a')).toBe(0);
  expect(compareText('a', 'b')).toBe(-1);
  expect(compareText('b', 'a')).toBe(1);
});
