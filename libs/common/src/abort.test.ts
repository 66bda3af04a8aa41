import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { abortable, sleep } from './abort.js';

const never = new Promise<never>(() => undefined);

describe('abortable and sleep', () => {
  it('share one abort listener among every call waiting on a signal, and all reject on abort', async () => {
    const controller = new AbortController();
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const calls = [
        ...Array.from({ length: 50 }, () => abortable(never, controller.signal)),
        ...Array.from({ length: 50 }, () => sleep(60_000, controller.signal)),
      ];
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
      controller.abort(new Error('stop'));
      const outcomes = await Promise.allSettled(calls);
      expect(
        outcomes.every((o) => o.status === 'rejected' && String(o.reason) === 'Error: stop'),
      ).toBe(true);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  });

  it('removes the shared listener once the last call settles', async () => {
    const controller = new AbortController();
    const values = await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => abortable(Promise.resolve(i), controller.signal)),
      sleep(1, controller.signal).then(() => -1),
    ]);
    expect(values).toHaveLength(21);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    await expect(
      abortable(Promise.reject(new Error('own failure')), controller.signal),
    ).rejects.toThrow('own failure');
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});
