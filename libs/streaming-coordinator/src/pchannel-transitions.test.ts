import { describe, expect, it } from 'vitest';
import { resolveCoordinatorOptions } from './coordinator-options.js';
import {
  beginAssign,
  completeAssign,
  initialMeta,
  markUnavailable,
  MAX_HISTORY_ENTRIES,
} from './pchannel-transitions.js';

describe('pchannel transitions', () => {
  it('bumps the term on every assignment and remembers earlier owners until ASSIGNED', () => {
    const first = beginAssign(initialMeta('wal-0000'), 1);
    expect(first).toMatchObject({ state: 'ASSIGNING', term: 1, nodeId: 1, history: [] });
    const assigned = completeAssign(first, 5);
    expect(assigned).toMatchObject({
      state: 'ASSIGNED',
      term: 1,
      history: [],
      lastAssignedAtMs: 5,
    });
    const moving = beginAssign(assigned, 2);
    expect(moving).toMatchObject({
      state: 'ASSIGNING',
      term: 2,
      nodeId: 2,
      history: [{ term: 1, nodeId: 1 }],
    });
    // Re-planned while ASSIGNING: the interrupted target must be told to remove too.
    const replanned = beginAssign(moving, 3);
    expect(replanned.term).toBe(3);
    expect(replanned.history).toEqual([
      { term: 1, nodeId: 1 },
      { term: 2, nodeId: 2 },
    ]);
  });

  it('keeps one history entry per node with its highest term, and a bounded history', () => {
    let meta = completeAssign(beginAssign(initialMeta('c'), 1), 0);
    for (let i = 0; i < 30; i++) meta = beginAssign(meta, i % 2 === 0 ? 2 : 1);
    expect(meta.history.map((h) => h.nodeId).sort()).toEqual([1, 2]);
    expect(Math.max(...meta.history.map((h) => h.term))).toBe(meta.term - 1);
    let wide = initialMeta('d');
    for (let node = 0; node < 20; node++) wide = beginAssign(wide, node);
    expect(wide.history.length).toBe(MAX_HISTORY_ENTRIES);
  });

  it('marks unavailable only at the current term of an ASSIGNED channel', () => {
    const assigned = completeAssign(beginAssign(initialMeta('c'), 1), 0);
    expect(markUnavailable(assigned, 0)).toBeUndefined();
    expect(markUnavailable(assigned, 1)?.state).toBe('UNAVAILABLE');
    expect(markUnavailable(beginAssign(assigned, 2), 2)).toBeUndefined();
  });
});

describe('resolveCoordinatorOptions', () => {
  it('applies the documented defaults', () => {
    expect(resolveCoordinatorOptions({})).toMatchObject({
      pchannelCount: 16,
      pchannelPrefix: 'wal',
      sessionTtlMs: 10_000,
      balanceIntervalMs: 5_000,
      moveCooldownMs: 30_000,
      maxMovesPerRound: 4,
      operationTimeoutMs: 30_000,
      channelBackoffInitialMs: 100,
      channelBackoffMaxMs: 10_000,
    });
  });

  it('rejects out-of-range values with INVALID_ARGUMENT listing every problem', () => {
    let error: unknown;
    try {
      resolveCoordinatorOptions({
        pchannelCount: 0,
        sessionTtlMs: 10,
        pchannelPrefix: '-x',
        channelBackoffInitialMs: 50,
        channelBackoffMaxMs: 10,
      });
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({ code: 'INVALID_ARGUMENT' });
    const message = (error as Error).message;
    for (const word of ['pchannelCount', 'sessionTtlMs', 'pchannelPrefix', 'channelBackoffMaxMs']) {
      expect(message).toContain(word);
    }
  });
});
