import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { AbortFanout } from './abort-fanout.js';

describe('AbortFanout', () => {
  it('keeps one listener on a signal shared by many operations and calls each once on abort', () => {
    const fanout = new AbortFanout();
    const controller = new AbortController();
    const calls: number[] = [];
    const callbacks = Array.from({ length: 1000 }, (_, i) => () => calls.push(i));
    for (const cb of callbacks) fanout.add(controller.signal, cb);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    fanout.remove(controller.signal, callbacks[0] as () => void);
    controller.abort();
    expect(calls).toHaveLength(999);
    expect(calls).not.toContain(0);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('removes its listener when the last operation leaves, and adds a fresh one later', () => {
    const fanout = new AbortFanout();
    const controller = new AbortController();
    const a = (): void => undefined;
    fanout.add(controller.signal, a);
    fanout.remove(controller.signal, a);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    let called = false;
    fanout.add(controller.signal, () => (called = true));
    controller.abort();
    expect(called).toBe(true);
  });

  it('calls a callback added to an aborted signal at once, also while the abort is dispatched', () => {
    const fanout = new AbortFanout();
    const controller = new AbortController();
    const calls: string[] = [];
    fanout.add(controller.signal, () => {
      calls.push('first');
      fanout.add(controller.signal, () => calls.push('added during dispatch'));
    });
    controller.abort();
    fanout.add(controller.signal, () => calls.push('added after'));
    expect(calls).toEqual(['first', 'added during dispatch', 'added after']);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});
