// Hand-written (de)serialisers for the frames of HandlerService.Produce, the hot path of the
// service. They produce and accept exactly the bytes of the generated code (the wire format is
// streaming.proto; `produce-codec.test.ts` compares the two), but:
//   * encode measures the frame first and writes it once into one buffer of the exact size
//     (the generated encoder grows a buffer by doubling, shifts every nested message >= 128 bytes
//     when it learns its length, then copies the result twice more), and
//   * decode returns payloads as views into the received frame instead of copies.
// Frames they do not cover (open, close, error outcomes, unknown fields) go through the
// generated code.
import { utf8Length, writeUtf8 } from '@woodstream/common';
import type { MessageID } from './gen/common.js';
import {
  ProduceRequest,
  ProduceResponse,
  type Message,
  type ProduceMessage,
  type ProduceResult,
  type ProduceSuccess,
} from './gen/streaming.js';

const MAX_U64 = 0xffff_ffff_ffff_ffffn;
const EMPTY = Buffer.alloc(0);
/**
 * The properties of every decoded message that has none: one frozen object rather than one
 * per message. Readers of decoded frames copy properties before adding to them.
 */
const NO_PROPERTIES: Record<string, string> = Object.freeze({});

/** Thrown inside a fast decoder for input it does not cover; the generated decoder takes over. */
class NotCovered extends Error {}
const notCovered = new NotCovered('not covered by the fast produce codec');

function varint32Size(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x20_0000 ? 3 : v < 0x1000_0000 ? 4 : 5;
}

function checkU64(v: bigint, field: string): void {
  if (v < 0n || v > MAX_U64)
    throw new Error(`value provided for field message.${field} of type uint64 too large`);
}

function varint64Size(v: bigint): number {
  if (v <= 0xffff_ffffn) return varint32Size(Number(v));
  let hi = Number(v >> 32n);
  let n = 5; // the low 32 bits and the first 3 of the high ones take 5 bytes
  hi >>>= 3;
  while (hi > 0) {
    n++;
    hi >>>= 7;
  }
  return n;
}

function checkSafeU64(v: number, field: string): void {
  if (!Number.isSafeInteger(v) || v < 0)
    throw new Error(`value provided for field message.${field} is not a uint64 below 2^53`);
}

/** A varint of a non-negative safe integer (a uint64 field with jstype JS_NUMBER). */
function varintNumberSize(v: number): number {
  if (v < 0x1_0000_0000) return varint32Size(v);
  let n = 5;
  for (let hi = Math.floor(v / 0x1_0000_0000) >>> 3; hi > 0; hi >>>= 7) n++;
  return n;
}

function writeVarintNumber(buf: Buffer, pos: number, v: number): number {
  if (v < 0x1_0000_0000) return writeVarint32(buf, pos, v);
  return writeVarintParts(buf, pos, v >>> 0, Math.floor(v / 0x1_0000_0000));
}

function writeVarint32(buf: Buffer, pos: number, v: number): number {
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

function writeVarint64(buf: Buffer, pos: number, v: bigint): number {
  if (v <= 0xffff_ffffn) return writeVarint32(buf, pos, Number(v));
  return writeVarintParts(buf, pos, Number(v & 0xffff_ffffn), Number(v >> 32n));
}

/** A uint64 varint from its low and high 32 bits (each an unsigned 32-bit number). */
function writeVarintParts(buf: Buffer, pos: number, lo: number, hi: number): number {
  while (hi > 0 || lo > 0x7f) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  buf[pos++] = lo;
  return pos;
}

// Byte lengths measured by the sizing pass, consumed in the same order by the writing pass.
// Module scratch: encoding is synchronous, so one array serves every call.
const lens: number[] = [];
// Entries of `lens` in use: it is reset by this count, not by its length, so that its storage is
// kept between frames instead of regrown for each.
let lensUsed = 0;
let lenAt = 0;
/** Storage kept between frames; a frame that needed more (many properties) releases it. */
const KEPT_LENS = 4096;

function resetLens(): void {
  if (lensUsed > KEPT_LENS) lens.length = 0;
  lensUsed = 0;
  lenAt = 0;
}

function sizeString(s: string): number {
  const n = utf8Length(s);
  lens[lensUsed++] = n;
  return 1 + varint32Size(n) + n;
}

function writeString(buf: Buffer, pos: number, tag: number, s: string): number {
  const n = lens[lenAt++] as number;
  buf[pos++] = tag;
  pos = writeVarint32(buf, pos, n);
  writeUtf8(buf, pos, s, n);
  return pos + n;
}

// --- ProduceRequest ---------------------------------------------------------------------------

/** Payloads from this size on are parts of their own in encodeProduceRequestParts. */
export const PRODUCE_VIEW_MIN_BYTES = 4096;

// Parts mode (encodeProduceRequestParts): payloads of at least `viewFrom` bytes are not copied
// into the frame buffer but returned as parts of their own, between the buffer's pieces.
let viewFrom = Infinity;
/** Payload bytes left out of the frame buffer (sizing pass). */
let viewedBytes = 0;
/** The parts so far and where the frame buffer's current piece starts (writing pass). */
let parts: Buffer[] = [];
let pieceStart = 0;

function sizeMessage(m: Message): number {
  let size = 0;
  const plen = m.payload.length;
  if (plen !== 0) size += 1 + varint32Size(plen) + plen;
  if (plen >= viewFrom) viewedBytes += plen;
  for (const key in m.properties) {
    if (!Object.hasOwn(m.properties, key)) continue;
    const value = m.properties[key] as string;
    let entry = 0;
    if (key !== '') entry += sizeString(key);
    if (value !== '') entry += sizeString(value);
    lens[lensUsed++] = entry;
    size += 1 + varint32Size(entry) + entry;
  }
  return size;
}

function writeMessage(buf: Buffer, pos: number, m: Message): number {
  const plen = m.payload.length;
  if (plen !== 0) {
    buf[pos++] = 10;
    pos = writeVarint32(buf, pos, plen);
    if (plen >= viewFrom) {
      parts.push(buf.subarray(pieceStart, pos));
      const p = m.payload as Uint8Array; // a Buffer or any Uint8Array a caller passed
      parts.push(Buffer.from(p.buffer, p.byteOffset, p.byteLength));
      pieceStart = pos;
    } else {
      buf.set(m.payload, pos);
      pos += plen;
    }
  }
  for (const key in m.properties) {
    if (!Object.hasOwn(m.properties, key)) continue;
    const value = m.properties[key] as string;
    // The entry's length was pushed after those of its strings.
    let at = lenAt;
    if (key !== '') at++;
    if (value !== '') at++;
    const entry = lens[at] as number;
    buf[pos++] = 18;
    pos = writeVarint32(buf, pos, entry);
    if (key !== '') pos = writeString(buf, pos, 10, key);
    if (value !== '') pos = writeString(buf, pos, 18, value);
    lenAt++; // the entry length
  }
  return pos;
}

function sizeProduceMessage(pm: ProduceMessage): number {
  let size = 0;
  if (pm.requestId !== 0) {
    checkSafeU64(pm.requestId, 'requestId');
    size += 1 + varintNumberSize(pm.requestId);
  }
  if (pm.vchannel !== '') size += sizeString(pm.vchannel);
  if (pm.message !== undefined) {
    // Its length goes before its contents' lengths: reserve the slot.
    const slot = lensUsed;
    lens[lensUsed++] = 0;
    const m = sizeMessage(pm.message);
    lens[slot] = m;
    size += 1 + varint32Size(m) + m;
  }
  if (pm.sequence !== 0) {
    checkSafeU64(pm.sequence, 'sequence');
    size += 1 + varintNumberSize(pm.sequence);
  }
  return size;
}

function writeProduceMessage(buf: Buffer, pos: number, pm: ProduceMessage): number {
  if (pm.requestId !== 0) {
    buf[pos++] = 8;
    pos = writeVarintNumber(buf, pos, pm.requestId);
  }
  if (pm.vchannel !== '') pos = writeString(buf, pos, 18, pm.vchannel);
  if (pm.message !== undefined) {
    buf[pos++] = 26;
    pos = writeVarint32(buf, pos, lens[lenAt++] as number);
    pos = writeMessage(buf, pos, pm.message);
  }
  if (pm.sequence !== 0) {
    buf[pos++] = 32;
    pos = writeVarintNumber(buf, pos, pm.sequence);
  }
  return pos;
}

/** The bytes of `ProduceRequest.encode(value)`, written once into a buffer of the exact size. */
export function encodeProduceRequest(value: ProduceRequest): Buffer {
  const r = value.request;
  if (r?.$case !== 'produce' && r?.$case !== 'produceBatch')
    return Buffer.from(ProduceRequest.encode(value).finish());
  return encodeProduceFrames(r);
}

/**
 * The bytes of `ProduceRequest.encode(value)` as consecutive parts: payloads of at least
 * `viewFrom` bytes are parts of their own, views of the caller's payloads (not copied), the rest
 * is written into one buffer whose pieces go between them. For writing to a socket with writev:
 * the payloads must not change until the write completed (the SDK's callers keep payloads
 * unchanged until their append settles).
 */
export function encodeProduceRequestParts(
  value: ProduceRequest,
  minViewBytes = PRODUCE_VIEW_MIN_BYTES,
): Buffer[] {
  const r = value.request;
  if (r?.$case !== 'produce' && r?.$case !== 'produceBatch')
    return [Buffer.from(ProduceRequest.encode(value).finish())];
  viewFrom = minViewBytes;
  viewedBytes = 0;
  parts = [];
  pieceStart = 0;
  try {
    const buf = encodeProduceFrames(r);
    if (pieceStart < buf.length || parts.length === 0) parts.push(buf.subarray(pieceStart));
    return parts;
  } finally {
    viewFrom = Infinity;
    viewedBytes = 0;
    parts = [];
    pieceStart = 0;
  }
}

function encodeProduceFrames(
  r: Extract<ProduceRequest['request'], { $case: 'produce' | 'produceBatch' }>,
): Buffer {
  resetLens();
  try {
    let inner: number;
    if (r.$case === 'produce') {
      inner = sizeProduceMessage(r.produce);
    } else {
      inner = 0;
      for (const pm of r.produceBatch.messages) {
        const slot = lensUsed;
        lens[lensUsed++] = 0;
        const n = sizeProduceMessage(pm);
        lens[slot] = n;
        inner += 1 + varint32Size(n) + n;
      }
    }
    const total = 1 + varint32Size(inner) + inner - viewedBytes;
    const buf = Buffer.allocUnsafe(total);
    let pos = 0;
    buf[pos++] = r.$case === 'produce' ? 18 : 34;
    pos = writeVarint32(buf, pos, inner);
    if (r.$case === 'produce') {
      pos = writeProduceMessage(buf, pos, r.produce);
    } else {
      for (const pm of r.produceBatch.messages) {
        buf[pos++] = 10;
        pos = writeVarint32(buf, pos, lens[lenAt++] as number);
        pos = writeProduceMessage(buf, pos, pm);
      }
    }
    if (pos !== total) throw new Error(`produce frame: wrote ${pos} of ${total} bytes`);
    return buf;
  } finally {
    resetLens();
  }
}

// --- decoding ---------------------------------------------------------------------------------

/** A cursor over one frame. */
interface Cursor {
  buf: Buffer;
  pos: number;
}

function readVarint32(c: Cursor): number {
  const { buf } = c;
  let pos = c.pos;
  let v = 0;
  // Bytes 1-4 in integer arithmetic (28 bits); the fifth brings the top 4 bits.
  for (let shift = 0; shift < 28; shift += 7) {
    if (pos >= buf.length) throw notCovered;
    const b = buf[pos++] as number;
    v |= (b & 0x7f) << shift;
    if (b < 0x80) {
      c.pos = pos;
      return v;
    }
  }
  if (pos >= buf.length) throw notCovered;
  const b = buf[pos++] as number;
  if (b > 0x0f) throw notCovered; // above 2^32, or longer than 5 bytes
  c.pos = pos;
  return v + b * 0x1000_0000;
}

// The high 32 bits of the last varint readVarint64Parts read (module scratch: decoding is
// synchronous), so that reading a uint64 allocates nothing.
let varintHigh = 0;

/**
 * Reads a uint64 varint: returns its low 32 bits and leaves the high ones in `varintHigh`. The
 * low 28 bits, then the high 36 in 32-bit pieces: no BigInt arithmetic per byte.
 */
function readVarint64Parts(c: Cursor): number {
  const { buf } = c;
  let lo = 0;
  let b = 0;
  varintHigh = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (c.pos >= buf.length) throw notCovered;
    b = buf[c.pos++] as number;
    lo |= (b & 0x7f) << shift;
    if (b < 0x80) return lo;
  }
  if (c.pos >= buf.length) throw notCovered;
  b = buf[c.pos++] as number;
  // Byte 5: 4 bits to the low word, 3 to the high one.
  lo = (lo | ((b & 0x0f) << 28)) >>> 0;
  let hi = (b & 0x7f) >> 4;
  if (b >= 0x80) {
    for (let shift = 3; ; shift += 7) {
      if (shift > 31 || c.pos >= buf.length) throw notCovered;
      b = buf[c.pos++] as number;
      hi = (hi | ((b & 0x7f) << shift)) >>> 0;
      if (b < 0x80) break;
    }
  }
  varintHigh = hi;
  return lo;
}

function readVarint64(c: Cursor): bigint {
  const lo = readVarint64Parts(c);
  const hi = varintHigh;
  if (hi < 0x20_0000) return BigInt(hi * 0x1_0000_0000 + lo); // below 2^53: exact as a number
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** A uint64 below 2^53 as a number; larger ones go to the generated decoder (which refuses them). */
function readVarintNumber(c: Cursor): number {
  const lo = readVarint64Parts(c);
  if (varintHigh >= 0x20_0000) throw notCovered;
  return varintHigh * 0x1_0000_0000 + lo;
}

/** End of a length-delimited field whose length starts at the cursor. */
function readEnd(c: Cursor, limit: number): number {
  const len = readVarint32(c);
  const end = c.pos + len;
  if (end > limit) throw notCovered;
  return end;
}

function readString(c: Cursor, limit: number): string {
  const end = readEnd(c, limit);
  const s = c.buf.toString('utf8', c.pos, end);
  c.pos = end;
  return s;
}

// The last vchannel name decoded, and its bytes: a stream nearly always writes one vchannel, so
// most messages reuse the string instead of decoding (and allocating) it again.
let lastVchannel = '';
let lastVchannelBytes: Uint8Array = new Uint8Array(0);
/** Names longer than this are decoded every time (and not remembered). */
const MAX_REMEMBERED_NAME_BYTES = 256;

function readVchannel(c: Cursor, limit: number): string {
  const end = readEnd(c, limit);
  const { buf } = c;
  const n = end - c.pos;
  let same = n === lastVchannelBytes.length;
  for (let i = 0; same && i < n; i++) same = buf[c.pos + i] === lastVchannelBytes[i];
  if (same) {
    c.pos = end;
    return lastVchannel;
  }
  const s = buf.toString('utf8', c.pos, end);
  if (n <= MAX_REMEMBERED_NAME_BYTES) {
    // A copy: the frame's buffer is the message's own and may be large; keep only the name.
    lastVchannelBytes = new Uint8Array(buf.subarray(c.pos, end));
    lastVchannel = s;
  }
  c.pos = end;
  return s;
}

function decodeMessage(c: Cursor, end: number): Message {
  const m: Message = { payload: EMPTY, properties: NO_PROPERTIES };
  while (c.pos < end) {
    const tag = c.buf[c.pos++];
    if (tag === 10) {
      const e = readEnd(c, end);
      // A view into the frame: the frame buffer is this message's own (grpc-js hands each
      // deserialiser a fresh buffer), so nothing else writes to it.
      m.payload = c.buf.subarray(c.pos, e);
      c.pos = e;
    } else if (tag === 18) {
      const e = readEnd(c, end);
      let key = '';
      let value = '';
      while (c.pos < e) {
        const t = c.buf[c.pos++];
        if (t === 10) key = readString(c, e);
        else if (t === 18) value = readString(c, e);
        else throw notCovered;
      }
      if (m.properties === NO_PROPERTIES) m.properties = {};
      m.properties[key] = value;
    } else throw notCovered;
  }
  if (c.pos !== end) throw notCovered;
  return m;
}

function decodeProduceMessage(c: Cursor, end: number): ProduceMessage {
  const pm: ProduceMessage = { requestId: 0, vchannel: '', message: undefined, sequence: 0 };
  while (c.pos < end) {
    const tag = c.buf[c.pos++];
    if (tag === 8) pm.requestId = readVarintNumber(c);
    else if (tag === 32) pm.sequence = readVarintNumber(c);
    else if (tag === 18) pm.vchannel = readVchannel(c, end);
    else if (tag === 26) {
      // A repeated message field is merged by the generated code; we never send one.
      if (pm.message !== undefined) throw notCovered;
      const e = readEnd(c, end);
      pm.message = decodeMessage(c, e);
    } else throw notCovered;
  }
  if (c.pos !== end) throw notCovered;
  return pm;
}

/**
 * `ProduceRequest.decode(value)`, with payloads as views into `value`; messages without
 * properties share one frozen empty object (copy before adding to it).
 */
export function decodeProduceRequest(value: Buffer): ProduceRequest {
  try {
    const c: Cursor = { buf: value, pos: 0 };
    const tag = value[0];
    if (tag !== 18 && tag !== 34) throw notCovered;
    c.pos = 1;
    const end = readEnd(c, value.length);
    // One field only: with more, the generated decoder's merge rules apply.
    if (end !== value.length) throw notCovered;
    if (tag === 18) {
      return { request: { $case: 'produce', produce: decodeProduceMessage(c, end) } };
    }
    const messages: ProduceMessage[] = [];
    while (c.pos < end) {
      if (c.buf[c.pos++] !== 10) throw notCovered;
      const e = readEnd(c, end);
      messages.push(decodeProduceMessage(c, e));
    }
    return { request: { $case: 'produceBatch', produceBatch: { messages } } };
  } catch (err) {
    if (err !== notCovered) throw err;
    return ProduceRequest.decode(value);
  }
}

// --- ProduceResponse --------------------------------------------------------------------------

function sizeId(id: MessageID): number {
  let n = 0;
  if (id.segmentId !== 0) {
    checkSafeU64(id.segmentId, 'segmentId');
    n += 1 + varintNumberSize(id.segmentId);
  }
  if (id.entryId !== 0) {
    checkSafeU64(id.entryId, 'entryId');
    n += 1 + varintNumberSize(id.entryId);
  }
  return n;
}

function writeId(buf: Buffer, pos: number, tag: number, id: MessageID, size: number): number {
  buf[pos++] = tag;
  pos = writeVarint32(buf, pos, size);
  if (id.segmentId !== 0) {
    buf[pos++] = 8;
    pos = writeVarintNumber(buf, pos, id.segmentId);
  }
  if (id.entryId !== 0) {
    buf[pos++] = 16;
    pos = writeVarintNumber(buf, pos, id.entryId);
  }
  return pos;
}

/** Sizes of a successful result, pushed in order: id, lastConfirmedId, success, result. */
function sizeResult(r: ProduceResult): number {
  const outcome = r.outcome;
  if (outcome?.$case !== 'success') throw notCovered;
  const s = outcome.success;
  let success = 0;
  if (s.id !== undefined) {
    const n = sizeId(s.id);
    lens[lensUsed++] = n;
    success += 1 + varint32Size(n) + n;
  }
  if (s.timeTick !== 0n) {
    checkU64(s.timeTick, 'timeTick');
    success += 1 + varint64Size(s.timeTick);
  }
  if (s.lastConfirmedId !== undefined) {
    const n = sizeId(s.lastConfirmedId);
    lens[lensUsed++] = n;
    success += 1 + varint32Size(n) + n;
  }
  lens[lensUsed++] = success;
  let size = 1 + varint32Size(success) + success;
  if (r.requestId !== 0) {
    checkSafeU64(r.requestId, 'requestId');
    size += 1 + varintNumberSize(r.requestId);
  }
  lens[lensUsed++] = size;
  return size;
}

function writeResult(buf: Buffer, pos: number, r: ProduceResult): number {
  const s = (r.outcome as { $case: 'success'; success: ProduceSuccess }).success;
  const idSize = s.id !== undefined ? (lens[lenAt++] as number) : 0;
  const lcSize = s.lastConfirmedId !== undefined ? (lens[lenAt++] as number) : 0;
  const success = lens[lenAt++] as number;
  lenAt++; // the result's own size, written by the caller
  if (r.requestId !== 0) {
    buf[pos++] = 8;
    pos = writeVarintNumber(buf, pos, r.requestId);
  }
  buf[pos++] = 18;
  pos = writeVarint32(buf, pos, success);
  if (s.id !== undefined) pos = writeId(buf, pos, 10, s.id, idSize);
  if (s.timeTick !== 0n) {
    buf[pos++] = 16;
    pos = writeVarint64(buf, pos, s.timeTick);
  }
  if (s.lastConfirmedId !== undefined) pos = writeId(buf, pos, 26, s.lastConfirmedId, lcSize);
  return pos;
}

/** The bytes of `ProduceResponse.encode(value)`, written once into a buffer of the exact size. */
export function encodeProduceResponse(value: ProduceResponse): Buffer {
  const r = value.response;
  try {
    if (r?.$case !== 'result' && r?.$case !== 'results') throw notCovered;
    resetLens();
    const results = r.$case === 'result' ? [r.result] : r.results.results;
    let inner = 0;
    for (const result of results) {
      const n = sizeResult(result);
      inner += r.$case === 'result' ? n : 1 + varint32Size(n) + n;
    }
    const total = 1 + varint32Size(inner) + inner - viewedBytes;
    const buf = Buffer.allocUnsafe(total);
    let pos = 0;
    buf[pos++] = r.$case === 'result' ? 18 : 34;
    pos = writeVarint32(buf, pos, inner);
    for (const result of results) {
      if (r.$case === 'results') {
        // The result's size is the last of its group of lengths.
        const s = (result.outcome as { success: ProduceSuccess }).success;
        const at =
          lenAt + (s.id !== undefined ? 1 : 0) + (s.lastConfirmedId !== undefined ? 1 : 0) + 1;
        buf[pos++] = 10;
        pos = writeVarint32(buf, pos, lens[at] as number);
      }
      pos = writeResult(buf, pos, result);
    }
    if (pos !== total) throw new Error(`produce response: wrote ${pos} of ${total} bytes`);
    return buf;
  } catch (err) {
    if (err !== notCovered) throw err;
    return Buffer.from(ProduceResponse.encode(value).finish());
  } finally {
    resetLens();
  }
}

function decodeId(c: Cursor, end: number): MessageID {
  const id: MessageID = { segmentId: 0, entryId: 0 };
  while (c.pos < end) {
    const tag = c.buf[c.pos++];
    if (tag === 8) id.segmentId = readVarintNumber(c);
    else if (tag === 16) id.entryId = readVarintNumber(c);
    else throw notCovered;
  }
  if (c.pos !== end) throw notCovered;
  return id;
}

function sameBytes(buf: Buffer, a: number, aEnd: number, b: number, bEnd: number): boolean {
  if (aEnd - a !== bEnd - b) return false;
  for (let i = 0; i < aEnd - a; i++) if (buf[a + i] !== buf[b + i]) return false;
  return true;
}

function decodeResult(c: Cursor, end: number): ProduceResult {
  let requestId = 0;
  let success: ProduceSuccess | undefined;
  while (c.pos < end) {
    const tag = c.buf[c.pos++];
    if (tag === 8) requestId = readVarintNumber(c);
    else if (tag === 18 && success === undefined) {
      const e = readEnd(c, end);
      const s: ProduceSuccess = { id: undefined, timeTick: 0n, lastConfirmedId: undefined };
      let idStart = 0;
      let idEnd = 0;
      while (c.pos < e) {
        const t = c.buf[c.pos++];
        if (t === 10 && s.id === undefined) {
          const idLimit = readEnd(c, e);
          idStart = c.pos;
          idEnd = idLimit;
          s.id = decodeId(c, idLimit);
        } else if (t === 16) s.timeTick = readVarint64(c);
        else if (t === 26 && s.lastConfirmedId === undefined) {
          const lcLimit = readEnd(c, e);
          // A message's last-confirmed id is nearly always its own id: the same bytes decode
          // to the same object (as the node encodes one object twice).
          if (s.id !== undefined && sameBytes(c.buf, idStart, idEnd, c.pos, lcLimit)) {
            s.lastConfirmedId = s.id;
            c.pos = lcLimit;
          } else {
            s.lastConfirmedId = decodeId(c, lcLimit);
          }
        } else throw notCovered;
      }
      if (c.pos !== e) throw notCovered;
      success = s;
    } else throw notCovered; // errors and anything unusual: the generated decoder
  }
  if (c.pos !== end) throw notCovered;
  return {
    requestId,
    outcome: success === undefined ? undefined : { $case: 'success', success },
  };
}

/** `ProduceResponse.decode(value)` for result frames, without the generic reader. */
export function decodeProduceResponse(value: Buffer): ProduceResponse {
  try {
    const tag = value[0];
    if (tag !== 18 && tag !== 34) throw notCovered;
    const c: Cursor = { buf: value, pos: 1 };
    const end = readEnd(c, value.length);
    if (end !== value.length) throw notCovered;
    if (tag === 18) return { response: { $case: 'result', result: decodeResult(c, end) } };
    const results: ProduceResult[] = [];
    while (c.pos < end) {
      if (c.buf[c.pos++] !== 10) throw notCovered;
      results.push(decodeResult(c, readEnd(c, end)));
    }
    return { response: { $case: 'results', results: { results } } };
  } catch (err) {
    if (err !== notCovered) throw err;
    return ProduceResponse.decode(value);
  }
}
