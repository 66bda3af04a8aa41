import { encodeRecordHead, crc32Range } from '../src/format/codec.js';
import { crc32 } from '../src/format/crc32.js';
const RECORD_HEADER_BYTES = 12;
function utf8Length(s: string): number {
  const n = s.length;
  if (n > 64) return Buffer.byteLength(s, 'utf8');
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, 'utf8');
  return n;
}
function writeUtf8(buf: Buffer, off: number, s: string, bytes: number): void {
  if (bytes === s.length && bytes <= 64) {
    for (let i = 0; i < bytes; i++) buf[off + i] = s.charCodeAt(i);
  } else {
    buf.write(s, off, bytes, 'utf8');
  }
}
const ks: string[] = []; const vs: string[] = []; const kl: number[] = []; const vl: number[] = [];
function head2(payload: Uint8Array, properties: Record<string, string> | undefined): Buffer {
  let headBytes = RECORD_HEADER_BYTES;
  let count = 0;
  if (properties !== undefined) {
    for (const key in properties) {
      if (!Object.hasOwn(properties, key)) continue;
      const value = properties[key] as string;
      const a = utf8Length(key); const b = utf8Length(value);
      ks[count] = key; vs[count] = value; kl[count] = a; vl[count] = b;
      headBytes += 6 + a + b;
      count++;
    }
  }
  const buf = Buffer.allocUnsafe(headBytes);
  buf[8] = count & 0xff; buf[9] = count >>> 8; buf[10] = 0; buf[11] = 0;
  let off = 12;
  for (let i = 0; i < count; i++) {
    const a = kl[i]!; const b = vl[i]!;
    buf[off] = a & 0xff; buf[off + 1] = a >>> 8;
    buf[off + 2] = b & 0xff; buf[off + 3] = (b >>> 8) & 0xff; buf[off + 4] = (b >>> 16) & 0xff; buf[off + 5] = b >>> 24;
    writeUtf8(buf, off + 6, ks[i]!, a);
    writeUtf8(buf, off + 6 + a, vs[i]!, b);
    off += 6 + a + b;
  }
  const len = headBytes + payload.byteLength - 8;
  buf[0] = len & 0xff; buf[1] = (len >>> 8) & 0xff; buf[2] = (len >>> 16) & 0xff; buf[3] = len >>> 24;
  const c = crc32(payload, crc32Range(buf, 8, headBytes, 0));
  buf[4] = c & 0xff; buf[5] = (c >>> 8) & 0xff; buf[6] = (c >>> 16) & 0xff; buf[7] = c >>> 24;
  return buf;
}
const payload = Buffer.alloc(1024, 3);
const N = 300000;
function mk(i: number): Record<string, string> {
  const p: Record<string, string> = { ...{}, ['_tt']: (464000000000000000n + BigInt(i)).toString(), ['_vc']: 'bench', ['_wt']: '1', ['_t']: 'data' };
  if (i % 64 === 0) p['_ps'] = 'abcdef0123456789:' + i + '+64';
  return p;
}
for (let round = 0; round < 3; round++) {
  const props = Array.from({ length: N }, (_, i) => mk(i));
  let s = 0;
  let t = performance.now();
  for (let i = 0; i < N; i++) s += encodeRecordHead({ payload, properties: props[i] }).length;
  const a = (performance.now() - t) / N * 1e6;
  t = performance.now();
  for (let i = 0; i < N; i++) s += head2(payload, props[i]).length;
  const b = (performance.now() - t) / N * 1e6;
  t = performance.now();
  for (let i = 0; i < N; i++) s += crc32(payload, 0);
  const c = (performance.now() - t) / N * 1e6;
  t = performance.now();
  for (let i = 0; i < N; i++) s += Buffer.allocUnsafe(80).length;
  const d = (performance.now() - t) / N * 1e6;
  console.log('current', a.toFixed(0), 'variant', b.toFixed(0), 'crc payload', c.toFixed(0), 'alloc', d.toFixed(0));
  for (let i = 0; i < 1000; i++) if (!encodeRecordHead({ payload, properties: props[i] }).equals(head2(payload, props[i]))) throw new Error('differ ' + i);
}
