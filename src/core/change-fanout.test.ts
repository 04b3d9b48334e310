import { EventEmitter } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import { ChangeFanout } from './change-fanout.js';

describe('ChangeFanout', () => {
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  beforeAll(() => { process.on('warning', onWarning); });
  afterAll(() => { process.off('warning', onWarning); });
  afterEach(() => {
    vi.useRealTimers();
    warnings.length = 0;
  });

  test('three hundred waiting callers are one listener on the source, all told by one event, and nothing warns of a leak', async () => {
    const source = new EventEmitter();
    const fanout = new ChangeFanout<number>((tell) => source.on('catalog', tell));
    const told: number[] = [];
    for (let i = 0; i < 300; i += 1) fanout.add((v) => told.push(v));
    expect(source.listenerCount('catalog')).toBe(1);
    source.emit('catalog', 7);
    expect(told).toHaveLength(300);
    expect(new Set(told)).toEqual(new Set([7]));
    // Node's warning comes on the next tick of the process, if at all.
    await new Promise((r) => setImmediate(r));
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  });

  test('a caller taken off is not told again; the others still are', () => {
    const source = new EventEmitter();
    const fanout = new ChangeFanout<string>((tell) => source.on('trust', tell));
    const a: string[] = [];
    const b: string[] = [];
    const removeA = fanout.add((v) => a.push(v));
    fanout.add((v) => b.push(v));
    source.emit('trust', 'one');
    removeA();
    source.emit('trust', 'two');
    expect([a, b, fanout.size]).toEqual([['one'], ['one', 'two'], 1]);
  });

  test.each([
    ['the next event', (source: EventEmitter) => source.emit('catalog', 1)],
    ['the caller going away', (_: EventEmitter, caller: EventEmitter) => caller.emit('close')],
    ['the deadline', () => vi.advanceTimersByTime(20_000)],
  ])('a long-poll ends at %s and leaves nothing behind', async (_, end) => {
    vi.useFakeTimers();
    const source = new EventEmitter();
    const caller = new EventEmitter();
    const fanout = new ChangeFanout<number>((tell) => source.on('catalog', tell));
    let ended = false;
    const waiting = fanout.next(20_000, caller).then(() => { ended = true; });
    await Promise.resolve();
    expect([ended, fanout.size, caller.listenerCount('close')]).toEqual([false, 1, 1]);
    end(source, caller);
    await waiting;
    expect([ended, fanout.size, caller.listenerCount('close'), vi.getTimerCount()]).toEqual([true, 0, 0, 0]);
  });

  test('a caller told while the others are told, and leaving then, does not stop the rest from being told', () => {
    const source = new EventEmitter();
    const fanout = new ChangeFanout<number>((tell) => source.on('catalog', tell));
    const told: string[] = [];
    const removeFirst = fanout.add(() => { told.push('first'); removeFirst(); });
    fanout.add(() => told.push('second'));
    source.emit('catalog', 1);
    source.emit('catalog', 2);
    expect(told).toEqual(['first', 'second', 'second']);
  });
});
