// UTF-8 measuring and writing for the short strings of hot encoders (property names and values,
// channel names): an ASCII check in JavaScript costs less than a native call for them.

/** Strings up to this length are measured and written in JavaScript when they are ASCII. */
const SHORT_STRING = 64;

/** UTF-8 length of `s`. Equal to `s.length` exactly when `s` is ASCII. */
export function utf8Length(s: string): number {
  const n = s.length;
  if (n > SHORT_STRING) return Buffer.byteLength(s, 'utf8');
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, 'utf8');
  return n;
}

/** Writes `s`, whose UTF-8 length is `bytes` (see {@link utf8Length}), into `buf` at `off`. */
export function writeUtf8(buf: Buffer, off: number, s: string, bytes: number): void {
  if (bytes === s.length && bytes <= SHORT_STRING) {
    // ASCII: byte by byte.
    for (let i = 0; i < bytes; i++) buf[off + i] = s.charCodeAt(i);
  } else if (bytes > 0) {
    buf.write(s, off, bytes, 'utf8');
  }
}
