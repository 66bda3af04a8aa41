import { describe, expect, it } from 'vitest';
import { NodeProduceBudget, ProduceWindow } from './handler-service.js';

describe('ProduceWindow', () => {
  const limits = {
    maxInflightPerProducer: 8,
    maxInflightBytesPerProducer: 1000,
    maxInflightBytesPerNode: 1 << 30,
  };
  /** A window with its resumes counted. */
  function window(budget?: NodeProduceBudget): { w: ProduceWindow; resumes: () => number } {
    let resumes = 0;
    const w = new ProduceWindow(limits, budget, () => resumes++);
    return { w, resumes: () => resumes };
  }

  it('pauses once at the message limit and resumes below half of it', () => {
    const { w, resumes } = window();
    expect(w.admit(4, 10)).toBe(false);
    expect(w.admit(4, 10)).toBe(true); // 8 messages
    expect(w.admit(4, 10)).toBe(false); // already paused: one pause per episode
    w.release(4, 10); // 8 left
    w.release(4, 10); // 4 left: not below half
    expect(resumes()).toBe(0);
    w.release(1, 2); // 3 left
    expect(resumes()).toBe(1);
    w.release(3, 8); // not paused any more
    expect(resumes()).toBe(1);
    expect([w.messages, w.bytes]).toEqual([0, 0]);
  });

  it('pauses at the byte limit too, and resumes only when both are below half', () => {
    const { w, resumes } = window();
    expect(w.admit(1, 999)).toBe(false);
    expect(w.admit(1, 1)).toBe(true); // 1000 bytes
    expect(w.admit(5, 0)).toBe(false);
    w.release(1, 999); // 6 messages left: at or above half of 8
    expect(resumes()).toBe(0);
    w.release(3, 0); // 3 messages, 1 byte
    expect(resumes()).toBe(1);
  });

  it('admits a frame larger than the byte limit alone, then pauses', () => {
    const { w, resumes } = window();
    expect(w.admit(1, 5000)).toBe(true);
    w.release(1, 5000);
    expect(resumes()).toBe(1);
  });

  it('refuses to release more than it admitted', () => {
    const { w } = window();
    w.admit(1, 10);
    expect(() => w.release(2, 10)).toThrow(/released no more/);
  });
});

describe('NodeProduceBudget', () => {
  const limits = {
    maxInflightPerProducer: 100,
    maxInflightBytesPerProducer: 1000,
    maxInflightBytesPerNode: 1000,
  };

  it('pauses every stream that sends while the node is full, and resumes them once it is below half', () => {
    const budget = new NodeProduceBudget(1000);
    const resumed: string[] = [];
    const a = new ProduceWindow(limits, budget, () => resumed.push('a'));
    const b = new ProduceWindow(limits, budget, () => resumed.push('b'));
    const c = new ProduceWindow(limits, budget, () => resumed.push('c'));
    expect(a.admit(1, 400)).toBe(false);
    expect(b.admit(1, 400)).toBe(false);
    expect(c.admit(1, 300)).toBe(true); // 1100 bytes on the node, 300 of them c's own
    expect(a.admit(1, 50)).toBe(true); // a's own 450 is fine, the node is not
    expect(budget.bytes).toBe(1150);
    // b answers: the node is at 750, not below half. Nobody resumes, b was never paused.
    b.release(1, 400);
    expect(resumed).toEqual([]);
    // a answers its first frame: the node at 350 is below half; a and c resume (their own
    // counts are below half of their limits), each once.
    a.release(1, 400);
    expect(resumed.sort()).toEqual(['a', 'c']);
    a.release(1, 50);
    c.release(1, 300);
    expect(resumed).toHaveLength(2);
    expect(budget.bytes).toBe(0);
  });

  it('keeps a stream paused by its own limit until its own count drops, whatever the node has', () => {
    const budget = new NodeProduceBudget(1 << 20);
    let resumes = 0;
    const w = new ProduceWindow({ ...limits, maxInflightPerProducer: 2 }, budget, () => resumes++);
    w.admit(1, 1);
    expect(w.admit(1, 1)).toBe(true);
    w.release(1, 1); // one left: not below half of 2
    expect(resumes).toBe(0);
    w.release(1, 1);
    expect(resumes).toBe(1);
  });

  it('forgets a paused stream that ended: it is never resumed, its frames still count until answered', () => {
    const budget = new NodeProduceBudget(1000);
    const resumed: string[] = [];
    const a = new ProduceWindow(limits, budget, () => resumed.push('a'));
    const b = new ProduceWindow(limits, budget, () => resumed.push('b'));
    a.admit(1, 600);
    expect(b.admit(1, 500)).toBe(true); // the node at 1100
    b.close();
    expect(budget.bytes).toBe(1100);
    a.release(1, 600);
    b.release(1, 500);
    expect(resumed).toEqual([]);
    expect(budget.bytes).toBe(0);
  });

  it('refuses to release more than its streams admitted', () => {
    const budget = new NodeProduceBudget(100);
    budget.add(10);
    expect(() => budget.remove(11)).toThrow(/no more than/);
  });
});
