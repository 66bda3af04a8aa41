// `npm run bench:crc` — the record checksum: zlib's CRC-32 (the raw limit Node offers) and the
// WAL's crc32 (a SIMD native module from 256 bytes, zlib below) on the same buffers in one run,
// the WAL's figure printed as a ratio of zlib's. Each measurement is bounded by time.
/* eslint-disable no-console -- a benchmark prints its table */
import { crc32 as zlibCrc32 } from 'node:zlib';
import { crc32, nativeCrc32Loaded } from '../src/format/crc32.js';

const seconds = process.argv.includes('--quick') ? 0.3 : 1;

/** GB/s of `fn` over `buf`, run for about `seconds`. */
function measure(fn: (b: Uint8Array) => number, buf: Uint8Array): number {
  let sink = 0;
  for (let i = 0; i < 1000; i++) sink ^= fn(buf); // warm-up
  let bytes = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++) sink ^= fn(buf);
    bytes += 100 * buf.byteLength;
  }
  const elapsed = (performance.now() - start) / 1000;
  if (sink === 0.5) console.log(sink); // never true: keeps the loop's results alive
  return bytes / elapsed / 1e9;
}

console.log(`native CRC-32 loaded: ${nativeCrc32Loaded ? 'yes' : 'no (zlib fallback)'}`);
console.log('size      | zlib (GB/s) | WAL crc32 (GB/s) | ratio');
console.log('----------|-------------|------------------|------');
for (const size of [256, 1024, 4096, 65_536, 1_048_576]) {
  const buf = Uint8Array.from({ length: size }, (_, i) => (i * 31) & 0xff);
  if (crc32(buf) !== zlibCrc32(buf)) throw new Error(`crc32 differs from zlib at ${size} bytes`);
  const raw = measure((b) => zlibCrc32(b), buf);
  const ours = measure((b) => crc32(b), buf);
  console.log(
    `${String(size).padEnd(9)} | ${raw.toFixed(2).padStart(11)} | ${ours.toFixed(2).padStart(16)} | ${(ours / raw).toFixed(2)}`,
  );
}
