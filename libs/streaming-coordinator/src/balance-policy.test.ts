import { describe, expect, it } from 'vitest';
import { planBalance, type PolicyChannel, type PolicyInput } from './balance-policy.js';

function channels(
  layout: Record<string, number | null>,
  extra: Partial<PolicyChannel> = {},
): PolicyChannel[] {
  return Object.entries(layout).map(([name, nodeId]) => ({
    name,
    nodeId,
    isMovable: true,
    lastAssignedAtMs: null,
    ...extra,
  }));
}

function input(overrides: Partial<PolicyInput>): PolicyInput {
  return {
    channels: [],
    healthyNodeIds: [1, 2, 3],
    allowRebalance: true,
    maxMovesPerRound: 4,
    moveCooldownMs: 1000,
    nowMs: 100_000,
    ...overrides,
  };
}

function loads(chs: PolicyChannel[], moves: ReturnType<typeof planBalance>): Map<number, number> {
  const owner = new Map(chs.map((c) => [c.name, c.nodeId]));
  for (const m of moves) owner.set(m.channel, m.nodeId);
  const load = new Map<number, number>();
  for (const node of owner.values()) if (node !== null) load.set(node, (load.get(node) ?? 0) + 1);
  return load;
}

describe('planBalance', () => {
  it('places unassigned channels evenly over healthy nodes', () => {
    const chs = channels(
      Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`wal-${i}`, null])),
    );
    const moves = planBalance(input({ channels: chs }));
    expect(moves).toHaveLength(16);
    expect(moves.every((m) => m.reason === 'place')).toBe(true);
    expect([...loads(chs, moves).values()].sort()).toEqual([5, 5, 6]);
  });

  it('keeps healthy placements and only re-places channels of a lost node', () => {
    const chs = channels({ a: 1, b: 1, c: 2, d: 2, e: 3, f: 3 });
    const moves = planBalance(input({ channels: chs, healthyNodeIds: [1, 2] }));
    expect(moves.map((m) => m.channel).sort()).toEqual(['e', 'f']);
    expect(moves.every((m) => m.reason === 'place' && m.nodeId !== 3)).toBe(true);
  });

  it('assigns nothing when no node is healthy', () => {
    expect(planBalance(input({ channels: channels({ a: null }), healthyNodeIds: [] }))).toEqual([]);
  });

  it('moves at most maxMovesPerRound channels from the most to the least loaded node', () => {
    const chs = channels({ a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1, h: 1, i: 1 });
    const moves = planBalance(input({ channels: chs, maxMovesPerRound: 2 }));
    expect(moves).toHaveLength(2);
    expect(moves.every((m) => m.reason === 'rebalance')).toBe(true);
    expect(new Set(moves.map((m) => m.nodeId))).toEqual(new Set([2, 3]));
  });

  it('stops rebalancing once the difference is at most 1', () => {
    const chs = channels({ a: 1, b: 1, c: 2, d: 3, e: 1 });
    const moves = planBalance(input({ channels: chs, maxMovesPerRound: 10 }));
    expect(moves).toHaveLength(1);
    const load = [...loads(chs, moves).values()];
    expect(Math.max(...load) - Math.min(...load)).toBeLessThanOrEqual(1);
  });

  it('does not rebalance when allowRebalance is false, but still places lost channels', () => {
    const chs = channels({ a: 1, b: 1, c: 1, d: 1, e: null });
    const moves = planBalance(input({ channels: chs, allowRebalance: false }));
    expect(moves).toEqual([{ channel: 'e', nodeId: 2, reason: 'place' }]);
  });

  it('skips channels moved within the cooldown and channels that are not movable', () => {
    const recent = channels({ a: 1, b: 1, c: 1 }, { lastAssignedAtMs: 99_500 });
    const busy = channels({ d: 1 }, { isMovable: false });
    const moves = planBalance(input({ channels: [...recent, ...busy], healthyNodeIds: [1, 2] }));
    expect(moves).toEqual([]);
    const old = channels({ e: 1 }, { lastAssignedAtMs: 1 });
    const later = planBalance(
      input({ channels: [...recent, ...busy, ...old], healthyNodeIds: [1, 2] }),
    );
    expect(later).toEqual([{ channel: 'e', nodeId: 2, reason: 'rebalance' }]);
  });

  it('never places a channel that is not movable, even without an owner', () => {
    const moves = planBalance(input({ channels: channels({ a: null }, { isMovable: false }) }));
    expect(moves).toEqual([]);
  });

  it('balances by weight when channels carry one', () => {
    const chs: PolicyChannel[] = [
      { name: 'heavy', nodeId: null, isMovable: true, lastAssignedAtMs: null, weight: 4 },
      ...channels({ a: null, b: null, c: null, d: null }),
    ];
    const moves = planBalance(input({ channels: chs, healthyNodeIds: [1, 2] }));
    const byNode = new Map<number, string[]>();
    for (const m of moves) byNode.set(m.nodeId, [...(byNode.get(m.nodeId) ?? []), m.channel]);
    expect(byNode.get(1)).toEqual(['heavy']);
    expect(byNode.get(2)?.sort()).toEqual(['a', 'b', 'c', 'd']);
  });
});
