import { describe, expect, it } from 'vitest';
import {
  consecutiveRun,
  parseProducerStamp,
  ProducerDedup,
  producerStamp,
  WHOLE_RESULT,
  type StoredResult,
} from './producer-dedup.js';

const at = (entryId: number): StoredResult => {
  const id = { segmentId: 1, entryId };
  return { id, timeTick: BigInt(100 + entryId), lastConfirmedId: id };
};
const never = new Promise<never>(() => undefined);

describe('ProducerDedup', () => {
  it('answers a remembered (producer, sequence) with its first result', () => {
    const d = new ProducerDedup(8);
    d.remember('a', 1, at(1));
    d.remember('a', 1, at(9)); // an older duplicate in the log: the first copy stays
    d.remember('b', 1, at(2));
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
    const first = d.beginFrame(
      'a',
      [{ sequence: 6 }, { sequence: 0 }, { sequence: 7 }],
      [106n, 0n, 107n],
      appended,
    );
    expect(first).toBeGreaterThanOrEqual(0);
    const answer = d.lookup('a', 7);
    expect(answer).toBeInstanceOf(Promise);
    complete([at(6).id, at(0).id, at(7).id]);
    expect(await answer).toEqual(at(7));
    // Recorded: later lookups answer from the ring, not the append.
    d.storedFrame(
      first,
      'a',
      [{ sequence: 6 }, { sequence: 0 }, { sequence: 7 }],
      [at(6).id, at(0).id, at(7).id],
      [106n, 0n, 107n],
    );
    expect(d.lookup('a', 6)).toEqual(at(6));
    expect(d.lookup('a', 7)).toEqual(at(7));
    expect(d.size).toBe(2);
  });

  it('keeps the slot of a message remembered while queued when it is written', async () => {
    const d = new ProducerDedup(8);
    const queued = Promise.resolve(at(3));
    const slot = d.begin('a', 3, 0n, queued, WHOLE_RESULT);
    expect(await d.lookup('a', 3)).toEqual(at(3));
    expect(d.begin('a', 3, 103n, never, 0)).toBe(slot);
    d.stored(slot, 'a', 3, at(3).id, 103n);
    expect(d.lookup('a', 3)).toEqual(at(3));
  });

  it('forgets a failed append so that a retry appends again, but not a newer copy', () => {
    const d = new ProducerDedup(8);
    const failed = d.begin('a', 1, 1n, never, 0);
    d.forget(failed, 'a', 1);
    expect(d.lookup('a', 1)).toBeUndefined();
    expect(d.size).toBe(0);
    d.remember('a', 1, at(2));
    d.forget(failed, 'a', 1); // the stale slot now holds another message: left alone
    expect(d.lookup('a', 1)).toEqual(at(2));
  });

  it('remembers at most its capacity, forgetting the oldest first', () => {
    const d = new ProducerDedup(3);
    const who = (seq: number) => (seq % 2 === 0 ? 'even' : 'odd');
    for (let seq = 1; seq <= 5; seq++) d.remember(who(seq), seq, at(seq));
    expect(d.size).toBe(3);
    expect([1, 2, 3, 4, 5].map((seq) => d.lookup(who(seq), seq))).toEqual([
      undefined,
      undefined,
      at(3),
      at(4),
      at(5),
    ]);
    // Forgotten slots still take their place in the ring until it passes them.
    d.forget(0, 'x', 1); // not held: no effect
    for (let seq = 6; seq <= 100; seq++) d.remember('x', seq, at(seq));
    expect(d.size).toBe(3);
    expect(d.lookup('x', 98)).toEqual(at(98));
    expect(d.lookup('x', 97)).toBeUndefined();
    expect(d.lookup('odd', 5)).toBeUndefined();
  });

  it('survives frames larger than the ring: slots reused meanwhile are left alone', async () => {
    const d = new ProducerDedup(2);
    const messages = [1, 2, 3, 4, 5].map((sequence) => ({ sequence }));
    const ids = messages.map((m) => at(m.sequence).id);
    const first = d.beginFrame(
      'a',
      messages,
      messages.map((m) => BigInt(100 + m.sequence)),
      Promise.resolve(ids),
    );
    d.storedFrame(
      first,
      'a',
      messages,
      ids,
      messages.map((m) => BigInt(100 + m.sequence)),
    );
    expect(d.size).toBe(2);
    expect(d.lookup('a', 3)).toBeUndefined();
    expect(await d.lookup('a', 4)).toEqual(at(4));
    expect(await d.lookup('a', 5)).toEqual(at(5));
  });

  it('agrees with a plain model over many producers, evictions and forgets', () => {
    // A seeded generator: the same sequence of operations on every run.
    let state = 12345;
    const random = (n: number) => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state % n;
    };
    const capacity = 37;
    const d = new ProducerDedup(capacity);
    // The model: the last `capacity` remembered (producer, sequence) in order, minus forgotten.
    const order: { key: string; slot: number; alive: boolean }[] = [];
    const next = new Map<string, number>();
    for (let step = 0; step < 20_000; step++) {
      const producer = `p${random(9)}`;
      if (random(10) === 0 && order.length > 0) {
        // Forget a random live message still in the window.
        const window = order.slice(-capacity).filter((e) => e.alive);
        const victim = window[random(window.length || 1)];
        if (victim !== undefined) {
          const [who, seq] = victim.key.split('/');
          d.forget(victim.slot, who as string, Number(seq));
          victim.alive = false;
        }
        continue;
      }
      // Mostly increasing sequences, sometimes far apart (past 2^32 too), sometimes repeated.
      const last = next.get(producer) ?? (random(2) === 0 ? 1 : 2 ** 32 - 3);
      const sequence = random(5) === 0 ? last + 1000 + random(1000) : last + 1;
      next.set(producer, sequence);
      const slot = d.begin(producer, sequence, BigInt(sequence), never, 0);
      order.push({ key: `${producer}/${sequence}`, slot, alive: true });
      d.stored(slot, producer, sequence, { segmentId: 0, entryId: sequence }, BigInt(sequence));
      if (step % 97 === 0) {
        const window = order.slice(-capacity);
        const alive = window.filter((e) => e.alive);
        expect(d.size).toBe(alive.length);
        for (const e of window) {
          const [who, seq] = e.key.split('/');
          const found = d.lookup(who as string, Number(seq));
          if (e.alive) expect(found).toMatchObject({ id: { entryId: Number(seq) } });
          else expect(found).toBeUndefined();
        }
        for (const e of order.slice(0, -capacity).slice(-50)) {
          const [who, seq] = e.key.split('/');
          expect(d.lookup(who as string, Number(seq))).toBeUndefined();
        }
      }
    }
  });

  it('remembers nothing with capacity 0', () => {
    const d = new ProducerDedup(0);
    d.remember('a', 1, at(1));
    expect(d.begin('a', 2, 0n, never, 0)).toBe(-1);
    expect(d.lookup('a', 1)).toBeUndefined();
    expect(d.size).toBe(0);
  });

  it('round-trips stamps and refuses anything else', () => {
    expect(parseProducerStamp(producerStamp('ff00', 42, 64))).toEqual({
      producer: 'ff00',
      sequence: 42,
      count: 64,
    });
    expect(consecutiveRun([{ sequence: 4 }, { sequence: 5 }, { sequence: 6 }])).toBe(3);
    expect(consecutiveRun([{ sequence: 4 }, { sequence: 6 }])).toBe(0);
    expect(consecutiveRun([{ sequence: 0 }, { sequence: 1 }])).toBe(0);
    expect(parseProducerStamp(producerStamp('ff00', 42))).toEqual({
      producer: 'ff00',
      sequence: 42,
      count: 1,
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
      'ff:1+0',
      'ff:1+x',
      'ff:1+',
    ])
      expect(parseProducerStamp(bad)).toBeUndefined();
  });
});
