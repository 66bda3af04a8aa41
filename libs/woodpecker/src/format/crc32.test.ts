import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32, nativeCrc32Loaded } from './crc32.js';

describe('crc32', () => {
  it('loads the native CRC-32 on the platforms this project runs on', () => {
    expect(nativeCrc32Loaded).toBe(true);
  });

  it('matches zlib at every size, offset and running value', () => {
    let x = 13;
    const next = (): number => (x = (x * 1103515245 + 12345) % 2 ** 31);
    const sizes = [1, 7, 255, 256, 257, 1000, 4096, 65_536, 70_001];
    for (let i = 0; i < 300; i++) {
      const size = i < sizes.length ? (sizes[i] as number) : 1 + (next() % 9000);
      const offset = next() % 13;
      const backing = Uint8Array.from({ length: size + offset + 5 }, () => next() % 256);
      const view = backing.subarray(offset, offset + size);
      const initial = i % 2 === 0 ? 0 : (next() * 2 + (next() % 2)) >>> 0;
      expect(crc32(view, initial)).toBe(zlibCrc32(view, initial));
      expect(crc32(Buffer.from(view), initial)).toBe(zlibCrc32(view, initial));
    }
  });

  it('chains: the CRC of a whole is the CRC of its tail continued from its head', () => {
    const data = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 31) % 256);
    for (const cut of [0, 1, 255, 256, 5000, 9999, 10_000]) {
      expect(crc32(data.subarray(cut), crc32(data.subarray(0, cut)))).toBe(crc32(data));
    }
  });

  it('returns the running value for empty input, whatever buffer it views', () => {
    for (const empty of [new Uint8Array(0), new Uint8Array(new ArrayBuffer(0)).subarray(0)]) {
      expect(crc32(empty)).toBe(0);
      expect(crc32(empty, 0xdeadbeef)).toBe(0xdeadbeef);
    }
  });
});
