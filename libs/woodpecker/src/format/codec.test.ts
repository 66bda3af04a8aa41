import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { crc32 } from 'node:zlib';
import {
  BLOCK_HEADER_BYTES,
  crc32Prefix8,
  crc32Range,
  decodeBlock,
  decodeWholeBlock,
  encodeBlock,
  encodeBlockHeader,
  encodeFenceBlock,
  encodePaddingBlock,
  encodeRecord,
  encodeRecordHead,
  isFence,
  isPadding,
  parseBlockHeader,
  recordSize,
  type EntryData,
} from './codec.js';

const fixtureDir = new URL('../../testdata/format-v1/', import.meta.url);
const enc = new TextEncoder();

/** The entries stored in testdata/format-v1/block-basic.bin. Never change them. */
export const BASIC_FIXTURE = {
  segmentId: 3,
  firstEntryId: 41,
  epoch: 7,
  entries: [
    { payload: enc.encode('hello') },
    { payload: new Uint8Array(0), properties: { trace: '00-abc-01', ü: 'ß' } },
    { payload: Uint8Array.from([0, 1, 2, 255]) },
  ] satisfies EntryData[],
};

function randomEntries(seed: number, count: number): EntryData[] {
  let x = seed;
  const next = (): number => (x = (x * 1103515245 + 12345) % 2 ** 31);
  return Array.from({ length: count }, () => {
    const payload = Uint8Array.from({ length: next() % 300 }, () => next() % 256);
    return next() % 3 === 0
      ? { payload, properties: { k: String(next()), other: 'v'.repeat(next() % 20) } }
      : { payload };
  });
}

describe('block codec (format v1)', () => {
  it('decodes the golden v1 fixture to the entries it was written from', () => {
    const bytes = readFileSync(new URL('block-basic.bin', fixtureDir));
    const block = decodeWholeBlock(bytes, 'fixture');
    expect(block.header).toMatchObject({
      version: 1,
      segmentId: 3,
      firstEntryId: 41,
      epoch: 7,
      entryCount: 3,
      flags: 0,
    });
    expect(block.entries).toEqual(BASIC_FIXTURE.entries);
  });

  it('encodes the golden entries to exactly the fixture bytes', () => {
    const bytes = readFileSync(new URL('block-basic.bin', fixtureDir));
    expect(encodeBlock(BASIC_FIXTURE).equals(bytes)).toBe(true);
  });

  it('encodes a record head that, followed by the payload, is the whole record (so the golden bytes too)', () => {
    const entries = [...BASIC_FIXTURE.entries, ...randomEntries(11, 50)];
    for (const e of entries) {
      const whole = encodeRecord(e);
      const head = encodeRecordHead(e);
      expect(Buffer.concat([head, e.payload]).equals(whole)).toBe(true);
    }
    const heads = BASIC_FIXTURE.entries.map(encodeRecordHead);
    const recordsBytes = BASIC_FIXTURE.entries.reduce(
      (n, e, i) => n + (heads[i] as Buffer).byteLength + e.payload.byteLength,
      0,
    );
    const header = encodeBlockHeader({ ...BASIC_FIXTURE, records: heads, recordsBytes });
    const parts = [
      header,
      ...BASIC_FIXTURE.entries.flatMap((e, i) => [heads[i] as Buffer, e.payload]),
    ];
    const bytes = readFileSync(new URL('block-basic.bin', fixtureDir));
    expect(Buffer.concat(parts).equals(bytes)).toBe(true);
  });

  it('checksums record heads of every size alike, short (table walk) or long (native)', () => {
    for (let valueBytes = 0; valueBytes <= 300; valueBytes += 7) {
      const e: EntryData = {
        payload: enc.encode('payload'),
        properties: { key: 'v'.repeat(valueBytes), other: 'é'.repeat(valueBytes % 5) },
      };
      expect(Buffer.concat([encodeRecordHead(e), e.payload]).equals(encodeRecord(e))).toBe(true);
    }
  });

  it('gives a record with an empty payload the same checksum whatever buffer the payload views', () => {
    // An empty view of a zero-length buffer has no storage; zlib's CRC read it as 0.
    const empties = [
      new Uint8Array(0),
      new Uint8Array(new ArrayBuffer(0)),
      enc.encode(''),
      new Uint8Array(0).subarray(0),
      Buffer.alloc(8).subarray(3, 3),
    ];
    const whole = encodeRecord({ payload: new Uint8Array(0), properties: { k: 'v' } });
    for (const payload of empties) {
      expect(encodeRecordHead({ payload, properties: { k: 'v' } }).equals(whole)).toBe(true);
      const block = encodeBlockHeader({
        segmentId: 1,
        firstEntryId: 0,
        epoch: 1,
        records: [encodeRecordHead({ payload })],
        recordsBytes: encodeRecord({ payload }).byteLength,
      });
      const bytes = Buffer.concat([block, encodeRecordHead({ payload })]);
      expect(decodeWholeBlock(bytes, 'empty payload').entries).toEqual([
        { payload: new Uint8Array(0) },
      ]);
    }
  });

  it('computes the 8-byte CRC-32 step like zlib, at any offset and from any running value', () => {
    let x = 7;
    const next = (): number => (x = (x * 1103515245 + 12345) % 2 ** 31);
    const buf = Uint8Array.from({ length: 4096 }, () => next() % 256);
    let running = 0;
    let viaZlib = 0;
    for (let off = 0; off + 8 <= buf.length; off += 8 + (next() % 5)) {
      running = crc32Prefix8(buf, off, running);
      viaZlib = crc32(buf.subarray(off, off + 8), viaZlib);
      expect(running).toBe(viaZlib);
    }
  });

  it('computes CRC-32 over any range like zlib, four bytes at a time and the rest byte by byte', () => {
    const buf = Uint8Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff);
    for (let from = 0; from < 5; from++) {
      for (let to = from; to <= 200; to++) {
        expect(crc32Range(buf, from, to, to * 7919)).toBe(crc32(buf.subarray(from, to), to * 7919));
      }
    }
  });

  it('decodes the golden v1 fence fixture as a fence', () => {
    const bytes = readFileSync(new URL('fence.bin', fixtureDir));
    const block = decodeWholeBlock(bytes, 'fixture');
    expect(isFence(block.header)).toBe(true);
    expect(block.entries).toEqual([]);
    expect(encodeFenceBlock(2, 100, 9).equals(bytes)).toBe(true);
  });

  it('decodes the golden v2 padding fixture as padding with no entries, and skips its filler unchecked', () => {
    const bytes = readFileSync(new URL('../../testdata/format-v2/padding.bin', import.meta.url));
    const block = decodeWholeBlock(bytes, 'fixture');
    expect(block.header).toMatchObject({
      version: 2,
      segmentId: 2,
      firstEntryId: 100,
      epoch: 9,
      entryCount: 0,
      recordsBytes: 200 - BLOCK_HEADER_BYTES,
    });
    expect(isPadding(block.header)).toBe(true);
    expect(isFence(block.header)).toBe(false);
    expect(block.sizeBytes).toBe(200);
    expect(encodePaddingBlock(2, 100, 9, 200).equals(bytes)).toBe(true);
    // The filler carries nothing: whatever a torn or reused sector left there is ignored.
    const dirty = Buffer.from(bytes);
    dirty[150] = 0x5a;
    expect(decodeWholeBlock(dirty, 'dirty').entries).toEqual([]);
  });

  it('refuses a version that does not match the padding flag, and padding with entries', () => {
    const header = (version: number, flags: number, entryCount: number): Buffer => {
      const b = encodePaddingBlock(1, 0, 1, BLOCK_HEADER_BYTES);
      b.writeUInt16LE(version, 4);
      b.writeUInt16LE(flags, 6);
      b.writeUInt32LE(entryCount, 24);
      b.writeUInt32LE(crc32(b.subarray(0, 44)), 44);
      return b;
    };
    expect(parseBlockHeader(header(2, 2, 0)).status).toBe('ok');
    for (const [version, flags, count] of [
      [1, 2, 0],
      [2, 0, 0],
      [2, 2, 1],
      [3, 2, 0],
    ] as const) {
      expect(parseBlockHeader(header(version, flags, count)).status).toBe('invalid');
    }
    expect(() => encodePaddingBlock(1, 0, 1, BLOCK_HEADER_BYTES - 1)).toThrow();
  });

  it('round-trips random entries and predicts the encoded size', () => {
    for (let seed = 1; seed <= 50; seed++) {
      const entries = randomEntries(seed, seed % 17);
      const bytes = encodeBlock({ segmentId: seed, firstEntryId: seed * 10, epoch: 1, entries });
      expect(bytes.byteLength).toBe(
        BLOCK_HEADER_BYTES + entries.reduce((n, e) => n + recordSize(e), 0),
      );
      const parsed = decodeBlock(bytes);
      expect(parsed.status).toBe('ok');
      if (parsed.status === 'ok') expect(parsed.block.entries).toEqual(entries);
    }
  });

  it('never returns entries from a block with any single flipped bit', () => {
    const bytes = encodeBlock({
      segmentId: 1,
      firstEntryId: 0,
      epoch: 2,
      entries: randomEntries(9, 5),
    });
    for (let i = 0; i < bytes.byteLength; i++) {
      for (const bit of [0, 7]) {
        const copy = Buffer.from(bytes);
        copy[i] = (copy[i] as number) ^ (1 << bit);
        expect(decodeBlock(copy).status, `byte ${i} bit ${bit}`).not.toBe('ok');
      }
    }
  });

  it('reports every prefix of a block as short (a torn tail), never as valid', () => {
    const bytes = encodeBlock({
      segmentId: 1,
      firstEntryId: 0,
      epoch: 2,
      entries: randomEntries(4, 6),
    });
    for (let cut = 0; cut < bytes.byteLength; cut++) {
      expect(decodeBlock(bytes.subarray(0, cut)).status).toBe('short');
    }
  });

  it('decodes consecutive blocks in one buffer by offset', () => {
    const a = encodeBlock({
      segmentId: 0,
      firstEntryId: 0,
      epoch: 1,
      entries: randomEntries(1, 3),
    });
    const b = encodeBlock({
      segmentId: 0,
      firstEntryId: 3,
      epoch: 1,
      entries: randomEntries(2, 2),
    });
    const both = Buffer.concat([a, b]);
    const first = decodeBlock(both, 0);
    expect(first.status).toBe('ok');
    const second = decodeBlock(both, a.byteLength);
    expect(second.status === 'ok' && second.block.header.firstEntryId).toBe(3);
  });

  it('throws a typed corruption error for a damaged stand-alone block', () => {
    const bytes = encodeBlock({
      segmentId: 0,
      firstEntryId: 0,
      epoch: 1,
      entries: randomEntries(3, 2),
    });
    bytes[bytes.byteLength - 1] = (bytes[bytes.byteLength - 1] as number) ^ 0xff;
    expect(() => decodeWholeBlock(bytes, 'seg 0 block 0')).toThrow(
      expect.objectContaining({ code: 'WAL_CORRUPT', retryable: false }) as Error,
    );
  });
});
