/** One pchannel as the balance policy sees it. */
export interface PolicyChannel {
  name: string;
  /**
   * The healthy node that holds the channel or is being given it; `null` when it has no healthy
   * owner (never assigned, marked unavailable, or its node is gone, stopping or frozen).
   */
  nodeId: number | null;
  /**
   * Whether the policy may move the channel: false while its assignment task runs or backs off
   * (the task owns the channel until it ends), true otherwise.
   */
  isMovable: boolean;
  /** When the channel was last assigned; rebalancing skips channels moved within the cooldown. */
  lastAssignedAtMs: number | null;
  /**
   * Vchannels registered on the channel (`coord/vchannel/<name>/`): the load it carries besides
   * being a pchannel. Non-negative integer. @default 0
   */
  vchannelCount?: number;
  /**
   * A node where the channel's assignment keeps failing (its WAL will not open there): placed on
   * another healthy node when there is one, and never moved there by rebalancing.
   */
  avoidNodeId?: number;
}

/** Input of {@link planBalance}. */
export interface PolicyInput {
  channels: readonly PolicyChannel[];
  /** Nodes that may receive channels: live session, not stopping, not frozen. */
  healthyNodeIds: readonly number[];
  /** Persisted admin switch: when false only channels without a healthy owner are placed. */
  allowRebalance: boolean;
  maxMovesPerRound: number;
  moveCooldownMs: number;
  nowMs: number;
}

/** A decision of the policy: give `channel` to `nodeId`. */
export interface PolicyMove {
  channel: string;
  nodeId: number;
  /** `place`: the channel had no healthy owner; `rebalance`: moved to lower the imbalance. */
  reason: 'place' | 'rebalance';
}

/**
 * Weights of the two imbalance terms of {@link layoutCost}. Equal: a pchannel is a WAL to open,
 * recover and tick, a vchannel is a share of the traffic; neither is known to dominate, and an
 * empty pchannel must still count (a node with 8 empty WALs is not idle).
 */
export const PCHANNEL_COST_WEIGHT = 1;
export const VCHANNEL_COST_WEIGHT = 1;
/** Cost changes below this are float noise, not an improvement. */
const MIN_IMPROVEMENT = 1e-9;

/** Load of one node: pchannels and the vchannels they carry. */
interface NodeLoad {
  pchannels: number;
  vchannels: number;
}

/** Per-node means over the healthy nodes; the cost measures the distance from them. */
interface Means {
  pchannels: number;
  vchannels: number;
}

/**
 * Imbalance of one node: the squared relative distance of its pchannel count and of its
 * vchannel count from the mean, weighted. Relative, so that the two terms are comparable
 * whatever the scale; a term whose mean is 0 (no vchannels anywhere) counts nothing.
 */
function nodeCost(load: NodeLoad, means: Means): number {
  let cost = 0;
  if (means.pchannels > 0) {
    cost += PCHANNEL_COST_WEIGHT * ((load.pchannels - means.pchannels) / means.pchannels) ** 2;
  }
  if (means.vchannels > 0) {
    cost += VCHANNEL_COST_WEIGHT * ((load.vchannels - means.vchannels) / means.vchannels) ** 2;
  }
  return cost;
}

/**
 * The imbalance of a layout, `Σ_nodes nodeCost`: 0 when every node holds the mean number of
 * pchannels and of vchannels. Exported for tests, which check that every move lowers it.
 */
export function layoutCost(
  layout: ReadonlyMap<number, { pchannels: number; vchannels: number }>,
): number {
  const loads = [...layout.values()];
  if (loads.length === 0) return 0;
  const means: Means = {
    pchannels: loads.reduce((sum, l) => sum + l.pchannels, 0) / loads.length,
    vchannels: loads.reduce((sum, l) => sum + l.vchannels, 0) / loads.length,
  };
  return loads.reduce((sum, l) => sum + nodeCost(l, means), 0);
}

/**
 * The balance policy, a pure and deterministic function (same input, same moves) so it can be
 * tested without I/O. It spreads both the pchannels and their vchannels over the healthy nodes
 * by lowering {@link layoutCost}:
 *
 * 1. Keeps every channel that has a healthy owner where it is.
 * 2. Places each movable channel without a healthy owner (most vchannels first, then by name) on
 *    the node where it raises the cost least (ties: lowest node id), other than its
 *    `avoidNodeId` when there is a choice.
 * 3. If `allowRebalance`, makes at most `maxMovesPerRound` single moves, each the one that
 *    lowers the cost most, and only while one lowers it by a worthwhile amount (`minGain`): a
 *    balanced layout never moves, and since every move strictly lowers the cost, rounds cannot
 *    undo each other's moves while the counts stay the same (no flapping). Channels that are not movable, were assigned within `moveCooldownMs` or were
 *    placed or moved in this round stay put. Ties go to the channel in place longest (the
 *    least likely to be recovering), then by name, then to the lowest node id.
 *
 * Without vchannels the cost is the pchannel spread alone, and a move happens only when two
 * nodes differ by more than one pchannel. No healthy node ⇒ no moves (the caller retries on the
 * next round).
 */
export function planBalance(input: PolicyInput): PolicyMove[] {
  const nodes = [...new Set(input.healthyNodeIds)].sort((a, b) => a - b);
  if (nodes.length === 0) return [];
  const healthy = new Set(nodes);
  const load = new Map<number, NodeLoad>(nodes.map((id) => [id, { pchannels: 0, vchannels: 0 }]));
  /** Channels that rebalancing may move, with their current node. */
  const movable: { channel: PolicyChannel; nodeId: number }[] = [];
  const unplaced: PolicyChannel[] = [];
  for (const channel of input.channels) {
    if (channel.nodeId !== null && healthy.has(channel.nodeId)) {
      add(load, channel.nodeId, channel, 1);
      if (channel.isMovable) movable.push({ channel, nodeId: channel.nodeId });
    } else if (channel.isMovable) {
      unplaced.push(channel);
    }
  }
  // The means of the layout after placement: every placed or to-be-placed channel counts.
  const placedOrPending = [...load.values()].reduce(
    (sum, l) => ({
      pchannels: sum.pchannels + l.pchannels,
      vchannels: sum.vchannels + l.vchannels,
    }),
    {
      pchannels: unplaced.length,
      vchannels: unplaced.reduce((sum, c) => sum + vchannelsOf(c), 0),
    },
  );
  const means: Means = {
    pchannels: placedOrPending.pchannels / nodes.length,
    vchannels: placedOrPending.vchannels / nodes.length,
  };

  const moves: PolicyMove[] = [];
  unplaced.sort((a, b) => vchannelsOf(b) - vchannelsOf(a) || compareNames(a.name, b.name));
  for (const channel of unplaced) {
    let best: { nodeId: number; delta: number } | undefined;
    for (const nodeId of nodes) {
      if (nodeId === channel.avoidNodeId && nodes.length > 1) continue;
      const delta = costDelta(load, means, channel, undefined, nodeId);
      // Strictly better only: ties keep the lowest node id (nodes are sorted).
      if (best === undefined || delta < best.delta - MIN_IMPROVEMENT) best = { nodeId, delta };
    }
    const target = (best as { nodeId: number }).nodeId;
    add(load, target, channel, 1);
    moves.push({ channel: channel.name, nodeId: target, reason: 'place' });
  }

  if (!input.allowRebalance) return moves;
  // A rebalancing move reopens a WAL and re-routes its clients, so it has to pay: it must gain
  // at least half of what moving one pchannel between two nodes two apart gains (2/p̄²).
  // Pchannel gains are multiples of that, so without vchannels a move happens exactly when two
  // nodes differ by more than one pchannel; with vchannels, marginal gains do not churn WALs.
  const minGain = Math.max(
    MIN_IMPROVEMENT,
    means.pchannels > 0 ? PCHANNEL_COST_WEIGHT / means.pchannels ** 2 : 0,
  );
  // Canonical order, so that equal improvements resolve the same way whatever the input order.
  const candidates = movable
    .filter(
      ({ channel: c }) =>
        c.lastAssignedAtMs === null || input.nowMs - c.lastAssignedAtMs >= input.moveCooldownMs,
    )
    .sort(
      (a, b) =>
        (a.channel.lastAssignedAtMs ?? 0) - (b.channel.lastAssignedAtMs ?? 0) ||
        compareNames(a.channel.name, b.channel.name),
    );
  for (let step = 0; step < input.maxMovesPerRound; step++) {
    let best: { index: number; to: number; delta: number } | undefined;
    for (let index = 0; index < candidates.length; index++) {
      const { channel, nodeId: from } = candidates[index] as (typeof candidates)[number];
      for (const to of nodes) {
        if (to === from || to === channel.avoidNodeId) continue;
        const delta = costDelta(load, means, channel, from, to);
        if (delta <= -minGain && (best === undefined || delta < best.delta - MIN_IMPROVEMENT))
          best = { index, to, delta };
      }
    }
    if (best === undefined) break; // no single move lowers the imbalance enough: balanced
    const [{ channel, nodeId: from }] = candidates.splice(best.index, 1) as [
      (typeof candidates)[number],
    ];
    add(load, from, channel, -1);
    add(load, best.to, channel, 1);
    // Spliced out: a channel moved in this round is not moved again in it.
    moves.push({ channel: channel.name, nodeId: best.to, reason: 'rebalance' });
  }
  return moves;
}

/** How the cost changes when `channel` leaves `from` (if any) and joins `to`. */
function costDelta(
  load: ReadonlyMap<number, NodeLoad>,
  means: Means,
  channel: PolicyChannel,
  from: number | undefined,
  to: number,
): number {
  const v = vchannelsOf(channel);
  const target = load.get(to) as NodeLoad;
  let delta =
    nodeCost({ pchannels: target.pchannels + 1, vchannels: target.vchannels + v }, means) -
    nodeCost(target, means);
  if (from !== undefined) {
    const source = load.get(from) as NodeLoad;
    delta +=
      nodeCost({ pchannels: source.pchannels - 1, vchannels: source.vchannels - v }, means) -
      nodeCost(source, means);
  }
  return delta;
}

function add(load: Map<number, NodeLoad>, nodeId: number, channel: PolicyChannel, sign: 1 | -1) {
  const l = load.get(nodeId) as NodeLoad;
  l.pchannels += sign;
  l.vchannels += sign * vchannelsOf(channel);
}

function vchannelsOf(channel: PolicyChannel): number {
  const v = channel.vchannelCount ?? 0;
  // Garbage in (a negative or fractional count from a bad record) must not skew the cost.
  return Number.isFinite(v) && v > 0 ? Math.floor(v) : 0;
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
