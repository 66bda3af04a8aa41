import { join } from 'node:path';
import { PROP } from '@woodstream/streaming';
import { makeTempDir, type TempDir } from '@woodstream/testing';
import { FileMetadataStore, MemoryObjectStore, Woodpecker } from '@woodstream/woodpecker';
import { gatedObjectStore, type GatedObjectStore } from '@woodstream/woodpecker/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChannelWal, type ChannelWalOptions } from './channel-wal.js';

const options: ChannelWalOptions = {
  maxMessageBytes: 1024,
  timeTickIntervalMs: 20,
  maxVChannelsPerPChannel: 16,
};
const bytes = (n: number) => new Uint8Array([n]);
const from = (producer: string, sequence: number) => ({ producer, sequence });
/** A frame of messages to vchannel `v` with these sequences (each payload is its sequence). */
const frame = (seqs: number[]) =>
  seqs.map((sequence) => ({ vchannel: 'v', payload: bytes(sequence), properties: {}, sequence }));

describe('deduplication of re-sent messages in a channel WAL', () => {
  let dir: TempDir;
  let metadata: FileMetadataStore;
  let wal: Woodpecker;
  let gated: GatedObjectStore;
  const opened: ChannelWal[] = [];

  const open = async (term: number, extra: Partial<ChannelWalOptions> = {}) => {
    const channel = await ChannelWal.open(wal, metadata, 'wal-0000', term, {
      ...options,
      ...extra,
    });
    opened.push(channel);
    return channel;
  };

  /** Every data message in the log, as `stamp -> payload byte` in log order. */
  const stored = async (): Promise<[string | undefined, number][]> => {
    const log = await wal.openLog('wal-0000');
    const reader = await log.openReader({ from: 'earliest' });
    const out: [string | undefined, number][] = [];
    try {
      const end = opened[opened.length - 1]?.endPosition;
      for (;;) {
        const entry = await reader.next();
        if (entry === undefined) break;
        if (entry.properties?.[PROP.type] === 'data')
          out.push([entry.properties[PROP.producer], entry.payload[0] as number]);
        if (
          end !== undefined &&
          entry.position.segmentId === end.segmentId &&
          entry.position.entryId + 1 >= end.entryId
        )
          break;
      }
    } finally {
      await reader.close();
    }
    return out;
  };

  // Uploads that reach the store fail while set (behind the gate: a held upload fails on release).
  let failUploads = false;

  beforeEach(async () => {
    dir = await makeTempDir('channel-wal-dedup');
    metadata = await FileMetadataStore.open({ path: join(dir.path, 'meta.log') });
    failUploads = false;
    const memory = new MemoryObjectStore();
    const failing = new Proxy(memory, {
      get(target, key, receiver) {
        if (key === 'put')
          return (...args: Parameters<MemoryObjectStore['put']>) =>
            failUploads
              ? Promise.reject(new Error('injected upload failure'))
              : target.put(...args);
        const value: unknown = Reflect.get(target, key, receiver);
        return typeof value === 'function'
          ? (value as (...args: unknown[]) => unknown).bind(target)
          : value;
      },
    });
    gated = gatedObjectStore(failing);
    wal = Woodpecker.open({
      metadata,
      storage: { mode: 'object', objectStore: gated.store },
      limits: { flushAgeMs: 1 },
    });
  });
  afterEach(async () => {
    gated.open();
    for (const channel of opened.splice(0)) await channel.close();
    await wal.close();
    await metadata.close();
    await dir.remove();
  });

  it('answers a re-sent message with its stored result and stores it once', async () => {
    const channel = await open(1);
    const first = await channel.append('v', bytes(1), {}, from('a', 1));
    const other = await channel.append('v', bytes(2), {}, from('b', 1));
    const again = await channel.append('v', bytes(1), {}, from('a', 1));
    expect(again).toEqual(first);
    expect(other.id).not.toEqual(first.id);
    expect(channel.deduplicated).toBe(1);
    // Messages without a producer are never deduplicated.
    await channel.append('v', bytes(3), {});
    await channel.append('v', bytes(3), {});
    expect(await stored()).toEqual([
      ['a:1', 1],
      ['b:1', 2],
      [undefined, 3],
      [undefined, 3],
    ]);
  });

  it('answers a re-send that arrives while the first send is still being stored', async () => {
    const channel = await open(1);
    gated.close();
    // The first message of a vchannel waits for its registration, the next for the writer.
    const first = channel.append('v', bytes(1), {}, from('a', 5));
    const again = channel.append('v', bytes(1), {}, from('a', 5));
    gated.open();
    expect(await again).toEqual(await first);
    gated.close();
    const second = channel.append('v', bytes(2), {}, from('a', 6));
    const secondAgain = channel.append('v', bytes(2), {}, from('a', 6));
    gated.open();
    expect(await secondAgain).toEqual(await second);
    expect(channel.deduplicated).toBe(2);
    expect(await stored()).toEqual([
      ['a:5', 1],
      ['a:6', 2],
    ]);
  });

  it('remembers nothing of a message it refused: a corrected re-send is stored', async () => {
    const channel = await open(1);
    // Refused before anything is stored: nothing to remember.
    await expect(channel.append('v', new Uint8Array(2048), {}, from('a', 1))).rejects.toMatchObject(
      { code: 'INVALID_ARGUMENT' },
    );
    const ok = await channel.append('v', bytes(1), {}, from('a', 1));
    expect(ok.timeTick).toBeGreaterThan(0n);
    expect(await stored()).toEqual([['a:1', 1]]);
  });

  it('sends a frame holding a re-sent message down the one-by-one path, which answers it', async () => {
    const channel = await open(1);
    await channel.append('v', bytes(0), {}); // a frame goes as one batch once its vchannel is known
    const firsts = await channel.appendBatch(frame([1, 2]), 'a');
    expect(firsts).toHaveLength(2);
    expect(channel.appendBatch(frame([2, 3]), 'a')).toBeUndefined();
    const two = await channel.append('v', bytes(2), {}, from('a', 2));
    expect(two).toEqual(firsts?.[1]);
    // Sequence 0 in a frame means "none": stored every time.
    await channel.appendBatch(frame([0, 0]), 'a');
    // A frame of consecutive sequences carries one stamp, on its first message.
    expect(await stored()).toEqual([
      [undefined, 0],
      ['a:1+2', 1],
      [undefined, 2],
      [undefined, 0],
      [undefined, 0],
    ]);
  });

  it('recognises after a takeover what the previous owner stored, from the log', async () => {
    const old = await open(1);
    const acked = [];
    for (let seq = 1; seq <= 3; seq++)
      acked.push(await old.append('v', bytes(seq), {}, from('p', seq)));
    // The next owner fences the old one (which never closed: it crashed, say) and reads the tail.
    const next = await open(2);
    expect(next.dedup.size).toBe(3);
    // Read: the first tick, the three messages and the ticks persisted between them.
    expect(next.recovery.tailEntriesRead).toBeGreaterThanOrEqual(4);
    expect(next.recovery.dedupEntries).toBe(3);
    expect(await next.append('v', bytes(2), {}, from('p', 2))).toEqual(acked[1]);
    const four = await next.append('v', bytes(4), {}, from('p', 4));
    expect(four.timeTick).toBeGreaterThan((acked[2] as { timeTick: bigint }).timeTick);
    expect(next.deduplicated).toBe(1);
    expect((await stored()).map(([stamp]) => stamp)).toEqual(['p:1', 'p:2', 'p:3', 'p:4']);
  });

  it('survives a re-sent frame meeting a write that then fails', async () => {
    const channel = await open(1);
    await channel.append('v', bytes(0), {});
    gated.close();
    const first = channel.appendBatch(frame([1, 2]), 'a');
    const outcome = first?.then(
      () => 'stored',
      (err: unknown) => err,
    );
    // Known (being written): the frame goes the one-by-one way, and nothing is left unhandled.
    expect(channel.appendBatch(frame([1, 2]), 'a')).toBeUndefined();
    failUploads = true;
    gated.open();
    expect(await outcome).toBeInstanceOf(Error);
  });

  it('does not give the missing messages of a cut frame to entries written after it', async () => {
    // A frame of three whose writer stored only the first (then failed), written by hand.
    const log = await wal.createLog('wal-0000');
    const stamped = (tick: number, extra: Record<string, string>) => ({
      properties: { _tt: String(tick), _vc: 'v', _wt: '1', _t: 'data', ...extra },
    });
    const cut = await log.openWriter({ ownerTerm: 1 });
    await cut.append(bytes(5), stamped(10, { [PROP.producer]: 'p:5+3' }));
    await cut.close();
    // The next owner writes messages of an anonymous producer right after it.
    const later = await log.openWriter({ ownerTerm: 2 });
    await later.append(bytes(100), stamped(20, {}));
    await later.append(bytes(101), stamped(21, {}));
    await later.close();
    const next = await open(3);
    expect(next.dedup.lookup('p', 5)).toMatchObject({ timeTick: 10n });
    expect(next.dedup.lookup('p', 6)).toBeUndefined();
    expect(next.dedup.lookup('p', 7)).toBeUndefined();
    expect(next.dedup.size).toBe(1);
  });

  it('recognises after a takeover every message of frames stamped once, and of frames stamped per message', async () => {
    const old = await open(1);
    await old.append('v', bytes(0), {}); // registers the vchannel: frames go as one batch
    const run = await old.appendBatch(frame([1, 2, 3, 4, 5]), 'p');
    const gappy = await old.appendBatch(frame([7, 9]), 'p');
    expect(run).toHaveLength(5);
    expect(gappy).toHaveLength(2);
    const next = await open(2);
    for (let i = 0; i < 5; i++) expect(next.dedup.lookup('p', i + 1)).toEqual(run?.[i]);
    expect(next.dedup.lookup('p', 6)).toBeUndefined();
    expect(next.dedup.lookup('p', 7)).toEqual(gappy?.[0]);
    expect(next.dedup.lookup('p', 9)).toEqual(gappy?.[1]);
    expect((await stored()).map(([stamp]) => stamp)).toEqual([
      undefined,
      'p:1+5',
      undefined,
      undefined,
      undefined,
      undefined,
      'p:7',
      'p:9',
    ]);
  });

  it('rebuilds from what truncation left when it cut into the tail', async () => {
    const old = await open(1);
    const acked = [];
    for (let seq = 1; seq <= 10; seq++)
      acked.push(await old.append('v', bytes(seq), {}, from('p', seq)));
    // Everything before message 6 goes, in the middle of the segment the tail starts in.
    await (
      await wal.openLog('wal-0000')
    ).truncate((acked[5] as { id: { segmentId: number; entryId: number } }).id);
    const next = await open(2);
    expect(next.dedup.lookup('p', 5)).toBeUndefined();
    for (let seq = 6; seq <= 10; seq++) expect(next.dedup.lookup('p', seq)).toEqual(acked[seq - 1]);
  });

  it('reads only the configured tail on takeover; past it a re-send is stored again', async () => {
    const old = await open(1);
    for (let seq = 1; seq <= 20; seq++) await old.append('v', bytes(seq), {}, from('p', seq));
    // Four entries from the end: the last data messages, and the odd persisted tick between them.
    const next = await open(2, { dedupWindowEntries: 4 });
    expect(next.dedup.size).toBeGreaterThanOrEqual(2);
    expect(next.dedup.size).toBeLessThanOrEqual(4);
    expect(next.dedup.lookup('p', 20)).toBeDefined();
    expect(next.dedup.lookup('p', 1)).toBeUndefined();
    // Off: nothing rebuilt, nothing remembered.
    const off = await open(3, { dedupWindowEntries: 0 });
    expect(off.dedup.size).toBe(0);
    await off.append('v', bytes(20), {}, from('p', 20));
    expect((await stored()).filter(([stamp]) => stamp === 'p:20')).toHaveLength(2);
  });
});
