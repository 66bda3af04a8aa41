import { describe, expect, it } from 'vitest';
import { layoutCost, planBalance, type PolicyChannel, type PolicyInput } from './balance-policy.js';

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

/** Pchannels and vchannels per node (nodes 1–3 always present) after applying `moves`. */
function layoutOf(
  chs: PolicyChannel[],
  moves: ReturnType<typeof planBalance>,
  nodeIds: number[] = [1, 2, 3],
): Map<number, { pchannels: number; vchannels: number }> {
  const owner = new Map(chs.map((c) => [c.name, c.nodeId]));
  for (const m of moves) owner.set(m.channel, m.nodeId);
  const layout = new Map(nodeIds.map((id) => [id, { pchannels: 0, vchannels: 0 }]));
  for (const c of chs) {
    const node = owner.get(c.name);
    const l = node === null || node === undefined ? undefined : layout.get(node);
    if (l === undefined) continue;
    l.pchannels += 1;
    l.vchannels += c.vchannelCount ?? 0;
  }
  return layout;
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

  it('spreads vchannels too: two heavy channels are placed on different nodes', () => {
    const chs: PolicyChannel[] = [
      ...channels({ h1: null, h2: null }, { vchannelCount: 40 }),
      ...channels({ e1: null, e2: null }),
    ];
    const moves = planBalance(input({ channels: chs, healthyNodeIds: [1, 2] }));
    expect(moves.every((m) => m.reason === 'place')).toBe(true);
    const layout = layoutOf(chs, moves);
    expect(layout.get(1)).toEqual({ pchannels: 2, vchannels: 40 });
    expect(layout.get(2)).toEqual({ pchannels: 2, vchannels: 40 });
  });

  it('places a channel elsewhere than its avoided node when it can, and there when it is the only one', () => {
    const stuck: PolicyChannel = {
      name: 'a',
      nodeId: null,
      isMovable: true,
      lastAssignedAtMs: null,
      avoidNodeId: 1,
    };
    // Node 1 would win the tie (lowest id) without the hint.
    expect(planBalance(input({ channels: [stuck], allowRebalance: false }))).toEqual([
      { channel: 'a', nodeId: 2, reason: 'place' },
    ]);
    expect(
      planBalance(input({ channels: [stuck], healthyNodeIds: [1], allowRebalance: false })),
    ).toEqual([{ channel: 'a', nodeId: 1, reason: 'place' }]);
    // Rebalancing does not move it back there either: node 1 is empty, node 2 holds three, and
    // only the other two move.
    const layout = [{ ...stuck, nodeId: 2 }, ...channels({ b: 2, c: 2 })];
    const moves = planBalance(input({ channels: layout, healthyNodeIds: [1, 2] }));
    expect(moves.map((m) => m.channel)).not.toContain('a');
    expect(moves).toHaveLength(1);
  });

  it('moves a heavy channel off a node holding every vchannel, then an empty one back', () => {
    const chs: PolicyChannel[] = [
      ...channels({ h1: 1, h2: 1 }, { vchannelCount: 20 }),
      ...channels({ e1: 2, e2: 2 }),
    ];
    const moves = planBalance(input({ channels: chs, healthyNodeIds: [1, 2] }));
    expect(moves).toEqual([
      { channel: 'h1', nodeId: 2, reason: 'rebalance' },
      { channel: 'e1', nodeId: 1, reason: 'rebalance' },
    ]);
    expect(layoutCost(layoutOf(chs, moves, [1, 2]))).toBe(0);
  });

  it('counts empty pchannels: they are spread even when one channel holds every vchannel', () => {
    const chs: PolicyChannel[] = [
      ...channels({ heavy: 1 }, { vchannelCount: 100 }),
      ...channels(Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`e${i}`, null]))),
    ];
    const moves = planBalance(input({ channels: chs, healthyNodeIds: [1, 2] }));
    const layout = layoutOf(chs, moves);
    expect(layout.get(1)?.pchannels).toBe(4);
    expect(layout.get(2)?.pchannels).toBe(4);
  });

  it('does not move when no single move lowers the imbalance', () => {
    // The vchannels cannot be evened out; moving a small channel would only skew the pchannels.
    const chs: PolicyChannel[] = [
      ...channels({ big: 1 }, { vchannelCount: 100 }),
      ...channels({ s1: 1, s2: 2, s3: 2 }, { vchannelCount: 1 }),
    ];
    expect(planBalance(input({ channels: chs, healthyNodeIds: [1, 2] }))).toEqual([]);
  });

  it('does not move a channel for a marginal vchannel gain', () => {
    // Moving `small` would even the vchannels out (21/19 → 20/20) but is not worth a WAL move.
    const chs: PolicyChannel[] = [
      ...channels({ a: 1, b: 1, c: 2 }, { vchannelCount: 10 }),
      ...channels({ small: 1 }, { vchannelCount: 1 }),
      ...channels({ d: 2 }, { vchannelCount: 9 }),
    ];
    expect(planBalance(input({ channels: chs, healthyNodeIds: [1, 2] }))).toEqual([]);
  });

  it('bounds the moves of a round and lowers the imbalance with every move', () => {
    const chs: PolicyChannel[] = Array.from({ length: 12 }, (_, i) => ({
      name: `wal-${String(i).padStart(2, '0')}`,
      nodeId: 1,
      isMovable: true,
      lastAssignedAtMs: null,
      vchannelCount: (i * 7) % 11,
    }));
    const moves = planBalance(input({ channels: chs, maxMovesPerRound: 3 }));
    expect(moves).toHaveLength(3);
    let cost = layoutCost(layoutOf(chs, []));
    for (let i = 1; i <= moves.length; i++) {
      const next = layoutCost(layoutOf(chs, moves.slice(0, i)));
      expect(next).toBeLessThan(cost);
      cost = next;
    }
  });

  it('converges without flapping: rounds on its own output end in a layout it keeps', () => {
    let chs: PolicyChannel[] = Array.from({ length: 16 }, (_, i) => ({
      name: `wal-${String(i).padStart(2, '0')}`,
      nodeId: i < 10 ? 1 : 2,
      isMovable: true,
      lastAssignedAtMs: null,
      vchannelCount: [0, 3, 50, 7, 0, 12, 1, 30, 0, 9, 4, 0, 22, 5, 0, 2][i] as number,
    }));
    const movedTo = new Map<string, number[]>();
    let cost = layoutCost(layoutOf(chs, []));
    let rounds = 0;
    for (; rounds < 50; rounds++) {
      const moves = planBalance(input({ channels: chs, maxMovesPerRound: 2 }));
      if (moves.length === 0) break;
      const next = layoutCost(layoutOf(chs, moves));
      expect(next).toBeLessThan(cost);
      cost = next;
      for (const m of moves) movedTo.set(m.channel, [...(movedTo.get(m.channel) ?? []), m.nodeId]);
      const owner = new Map(moves.map((m) => [m.channel, m.nodeId]));
      chs = chs.map((c) => ({ ...c, nodeId: owner.get(c.name) ?? c.nodeId }));
    }
    expect(rounds).toBeLessThan(50);
    expect(planBalance(input({ channels: chs }))).toEqual([]);
    const layout = [...layoutOf(chs, []).values()];
    const pchannels = layout.map((l) => l.pchannels);
    expect(Math.max(...pchannels) - Math.min(...pchannels)).toBeLessThanOrEqual(2);
    const vchannels = layout.map((l) => l.vchannels);
    // 145 vchannels over 3 nodes: far from one node holding most of them as it started.
    expect(Math.max(...vchannels)).toBeLessThan(70);
  });

  it('is deterministic: the same channels in any order give the same moves', () => {
    const chs: PolicyChannel[] = [
      ...channels({ a: 1, b: 1, c: 1, d: 1 }, { vchannelCount: 5 }),
      ...channels({ e: 1, f: null, g: null }, { vchannelCount: 2 }),
      ...channels({ h: 2 }),
    ];
    const expected = planBalance(input({ channels: chs }));
    expect(expected.length).toBeGreaterThan(0);
    for (const order of [[...chs].reverse(), [...chs.slice(3), ...chs.slice(0, 3)]]) {
      expect(planBalance(input({ channels: order, healthyNodeIds: [3, 1, 2] }))).toEqual(expected);
    }
  });
});
