import { describe, expect, it } from 'vitest';
import { parseProducerStamp, ProducerDedup, producerStamp } from './producer-dedup.js';

const at = (entryId: number) => {
  const id = { segmentId: 1, entryId };
  return { id, timeTick: BigInt(100 + entryId), lastConfirmedId: id };
};

describe('ProducerDedup', () => {
  it('answers a remembered (producer, sequence) with its first result', () => {
    const d = new ProducerDedup(8);
    d.remember('a', 1, 101n, at(1));
    d.remember('a', 1, 109n, at(9)); // an older duplicate in the log: the first copy stays
    d.remember('b', 1, 102n, at(2));
    expect(d.lookup('a', 1)).toEqual(at(1));
    expect(d.lookup('b', 1)).toEqual(at(2));
    expect(d.lookup('a', 2)).toBeUndefined();
    expect(d.lookup('c', 1)).toBeUndefined();
    expect(d.size).toBe(2);
  });

  it('answers a message in flight once its append completes, by its index in the frame', async () => {
    const d = new ProducerDedup(8);
    let complete!: (ids: { segmentId: number; entryId: number }[]) => void;
    const appended = new Promise<{ segmentId: number; entryId: number }[]>(
      (resolve) => (complete = resolve),
    );
    d.remember('a', 7, 107n, undefined, appended, 1);
    const answer = d.lookup('a', 7);
    expect(answer).toBeInstanceOf(Promise);
    complete([at(6).id, at(7).id]);
    expect(await answer).toEqual({ id: at(7).id, timeTick: 107n, lastConfirmedId: at(7).id });
  });

  it('forgets a failed append so that a retry appends again, but not a newer copy', () => {
    const d = new ProducerDedup(8);
    const failed = d.remember('a', 1, 1n, undefined, Promise.resolve(at(1).id));
    expect(failed).toBeDefined();
    d.forget('a', 1, failed!);
    expect(d.lookup('a', 1)).toBeUndefined();
    const again = d.remember('a', 1, 2n, at(2));
    d.forget('a', 1, failed!); // a stale handle does not remove the newer copy
    expect(d.lookup('a', 1)).toBe(again?.stored);
  });

  it('remembers at most its capacity, forgetting the oldest first', () => {
    const d = new ProducerDedup(3);
    for (let seq = 1; seq <= 5; seq++) d.remember(seq % 2 === 0 ? 'even' : 'odd', seq, 0n, at(seq));
    expect(d.size).toBe(3);
    expect([1, 2, 3, 4, 5].map((seq) => d.lookup(seq % 2 === 0 ? 'even' : 'odd', seq))).toEqual([
      undefined,
      undefined,
      at(3),
      at(4),
      at(5),
    ]);
    // Forgotten slots still take their place in the ring until it passes them.
    for (let seq = 6; seq <= 100; seq++) d.remember('x', seq, 0n, at(seq));
    expect(d.size).toBe(3);
    expect(d.lookup('x', 98)).toEqual(at(98));
    expect(d.lookup('x', 97)).toBeUndefined();
  });

  it('remembers nothing with capacity 0', () => {
    const d = new ProducerDedup(0);
    expect(d.remember('a', 1, 0n, at(1))).toBeUndefined();
    expect(d.lookup('a', 1)).toBeUndefined();
  });

  it('round-trips stamps and refuses anything else', () => {
    expect(parseProducerStamp(producerStamp('ff00', 42))).toEqual({
      producer: 'ff00',
      sequence: 42,
    });
    for (const bad of [
      undefined,
      '',
      'ff',
      ':1',
      'ff:',
      'ff:0',
      'ff:-1',
      'ff:1.5',
      'ff:x',
      'ff:1e400',
    ])
      expect(parseProducerStamp(bad)).toBeUndefined();
  });
});
