import { describe, expect, it } from 'vitest';
import { utf8Length, writeUtf8 } from './utf8.js';

describe('utf8Length and writeUtf8', () => {
  it('measure and write like Buffer, for ASCII and other strings of every length around the cut-off', () => {
    const samples = ['', 'a', '_tt', 'é', 'a€b', '😀', '\ud800', 'x'.repeat(64), 'x'.repeat(65)];
    for (let n = 0; n <= 70; n++) samples.push('b'.repeat(n), `${'c'.repeat(n)}é`);
    for (const s of samples) {
      const bytes = utf8Length(s);
      expect(bytes).toBe(Buffer.byteLength(s, 'utf8'));
      const buf = Buffer.alloc(bytes + 4, 0xee);
      writeUtf8(buf, 2, s, bytes);
      expect(buf.subarray(2, 2 + bytes).equals(Buffer.from(s, 'utf8'))).toBe(true);
      expect([buf[0], buf[1], buf[bytes + 2], buf[bytes + 3]]).toEqual([0xee, 0xee, 0xee, 0xee]);
    }
  });
});
