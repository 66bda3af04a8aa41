import { describe, expect, it } from 'vitest';
import { ProduceWindow } from './handler-service.js';

describe('ProduceWindow', () => {
  const limits = { maxInflightPerProducer: 8, maxInflightBytesPerProducer: 1000 };

  it('pauses once at the message limit and resumes below half of it', () => {
    const w = new ProduceWindow(limits);
    expect(w.admit(4, 10)).toBe(false);
    expect(w.admit(4, 10)).toBe(true); // 8 messages
    expect(w.admit(4, 10)).toBe(false); // already paused: one pause per episode
    expect(w.release(4, 10)).toBe(false); // 8 left
    expect(w.release(4, 10)).toBe(false); // 4 left: not below half
    expect(w.release(1, 2)).toBe(true); // 3 left
    expect(w.release(3, 8)).toBe(false); // not paused any more
    expect([w.messages, w.bytes]).toEqual([0, 0]);
  });

  it('pauses at the byte limit too, and resumes only when both are below half', () => {
    const w = new ProduceWindow(limits);
    expect(w.admit(1, 999)).toBe(false);
    expect(w.admit(1, 1)).toBe(true); // 1000 bytes
    expect(w.admit(5, 0)).toBe(false);
    expect(w.release(1, 999)).toBe(false); // 6 messages left: at or above half of 8
    expect(w.release(3, 0)).toBe(true); // 3 messages, 1 byte
  });

  it('admits a frame larger than the byte limit alone, then pauses', () => {
    const w = new ProduceWindow(limits);
    expect(w.admit(1, 5000)).toBe(true);
    expect(w.release(1, 5000)).toBe(true);
  });

  it('refuses to release more than it admitted', () => {
    const w = new ProduceWindow(limits);
    w.admit(1, 10);
    expect(() => w.release(2, 10)).toThrow(/released no more/);
  });
});
