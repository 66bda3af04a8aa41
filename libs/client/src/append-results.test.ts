import { describe, expect, it } from 'vitest';
import { AppendResults } from './append-results.js';
import type { AppendResult } from './types.js';

const result = (entryId: number): AppendResult => ({
  messageId: { segmentId: 0, entryId },
  timeTick: BigInt(entryId),
  lastConfirmedId: { segmentId: 0, entryId },
});

/** Whether `promise` has settled by the time already-queued callbacks have run. */
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

describe('AppendResults', () => {
  it('resolves with the results in input order once every slot has settled, in any order', async () => {
    const results = new AppendResults(3);
    results.resolve(2, result(12));
    results.resolve(0, result(10));
    expect(await isSettled(results.promise)).toBe(false);
    results.resolve(1, result(11));
    const values = await results.promise;
    expect(values.map((v) => v.messageId.entryId)).toEqual([10, 11, 12]);
  });

  it('rejects with the first failure in input order, only after all slots settled', async () => {
    const results = new AppendResults(4);
    results.reject(3, new Error('third'));
    results.resolve(0, result(0));
    results.reject(1, new Error('first'));
    expect(await isSettled(results.promise)).toBe(false);
    results.reject(2, new Error('second'));
    await expect(results.promise).rejects.toThrow('first');
  });

  it('refuses a slot settling twice (an invariant of the producer)', () => {
    const results = new AppendResults(2);
    results.resolve(0, result(0));
    expect(() => results.reject(0, new Error('again'))).toThrow(/settles once/);
  });

  it('does not report an unhandled rejection when nobody awaits a failed call', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      new AppendResults(1).reject(0, new Error('nobody listens'));
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });
});
