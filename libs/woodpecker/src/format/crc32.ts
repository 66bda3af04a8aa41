import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * CRC-32 (the IEEE polynomial, as zlib computes it) of `data`, continuing from `initial`.
 *
 * An empty input returns `initial` itself. zlib's function does not promise that: given an
 * empty view whose buffer has no storage (`new Uint8Array(new ArrayBuffer(0))`,
 * `new TextEncoder().encode('')`, a subarray of either) it sees a null pointer and returns 0,
 * which made the head of a record with such a payload carry a checksum the record never had.
 */
export function crc32(data: Uint8Array, initial = 0): number {
  if (data.byteLength === 0) return initial >>> 0;
  return zlibCrc32(data, initial);
}
