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
   * Load the channel puts on its node. Seam for vchannel-aware balancing: today every channel
   * weighs 1; a vchannel count (or bytes/s) can be plugged in here without touching the policy.
   * @default 1
   */
  weight?: number;
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
  /** `place`: the channel had no healthy owner; `rebalance`: moved off a more loaded node. */
  reason: 'place' | 'rebalance';
}

/**
 * The balance policy, a pure function so it can be tested without I/O.
 *
 * 1. Keeps every channel that has a healthy owner where it is.
 * 2. Places each channel without a healthy owner on the healthy node with the least load
 *    (heaviest channels first, then by name; ties go to the lowest node id) — deterministic.
 * 3. If `allowRebalance`, moves at most `maxMovesPerRound` channels from the most to the least
 *    loaded node while that reduces the spread (with unit weights: while the difference is > 1),
 *    skipping channels that are not movable or were assigned within `moveCooldownMs`.
 *
 * No healthy node ⇒ no moves (the caller retries on the next round).
 */
export function planBalance(input: PolicyInput): PolicyMove[] {
  const nodes = [...new Set(input.healthyNodeIds)].sort((a, b) => a - b);
  if (nodes.length === 0) return [];
  const healthy = new Set(nodes);
  const load = new Map<number, number>(nodes.map((id) => [id, 0]));
  /** Channels per node that rebalancing may move. */
  const movable = new Map<number, PolicyChannel[]>(nodes.map((id) => [id, []]));
  const unplaced: PolicyChannel[] = [];
  for (const channel of input.channels) {
    const weight = weightOf(channel);
    if (channel.nodeId !== null && healthy.has(channel.nodeId)) {
      load.set(channel.nodeId, (load.get(channel.nodeId) ?? 0) + weight);
      if (channel.isMovable) movable.get(channel.nodeId)?.push(channel);
    } else if (channel.isMovable) {
      unplaced.push(channel);
    }
  }

  const moves: PolicyMove[] = [];
  unplaced.sort((a, b) => weightOf(b) - weightOf(a) || compareNames(a.name, b.name));
  for (const channel of unplaced) {
    const target = leastLoaded(nodes, load);
    load.set(target, (load.get(target) ?? 0) + weightOf(channel));
    moves.push({ channel: channel.name, nodeId: target, reason: 'place' });
  }

  if (!input.allowRebalance) return moves;
  for (let step = 0; step < input.maxMovesPerRound; step++) {
    const move = bestRebalanceMove(input, nodes, load, movable);
    if (move === undefined) break;
    moves.push({ channel: move.channel.name, nodeId: move.to, reason: 'rebalance' });
    load.set(move.from, (load.get(move.from) ?? 0) - weightOf(move.channel));
    load.set(move.to, (load.get(move.to) ?? 0) + weightOf(move.channel));
    const list = movable.get(move.from) ?? [];
    list.splice(list.indexOf(move.channel), 1);
    // A channel moved in this round is not moved again in it.
  }
  return moves;
}

function bestRebalanceMove(
  input: PolicyInput,
  nodes: readonly number[],
  load: ReadonlyMap<number, number>,
  movable: ReadonlyMap<number, PolicyChannel[]>,
): { channel: PolicyChannel; from: number; to: number } | undefined {
  const to = leastLoaded(nodes, load);
  const minLoad = load.get(to) ?? 0;
  // Try donors from the most loaded down, so a node whose channels are all cooling down does
  // not stop the others from being evened out.
  const donors = [...nodes].sort((a, b) => (load.get(b) ?? 0) - (load.get(a) ?? 0) || a - b);
  for (const from of donors) {
    if (from === to) continue;
    const gap = (load.get(from) ?? 0) - minLoad;
    const candidates = (movable.get(from) ?? [])
      .filter(
        (c) =>
          // Moving must shrink the spread: with weight w, only when the gap exceeds w.
          gap > weightOf(c) &&
          (c.lastAssignedAtMs === null || input.nowMs - c.lastAssignedAtMs >= input.moveCooldownMs),
      )
      // Move the channel that has been in place longest: it is the least likely to be recovering.
      .sort(
        (a, b) =>
          (a.lastAssignedAtMs ?? 0) - (b.lastAssignedAtMs ?? 0) || compareNames(a.name, b.name),
      );
    const channel = candidates[0];
    if (channel !== undefined) return { channel, from, to };
  }
  return undefined;
}

function leastLoaded(nodes: readonly number[], load: ReadonlyMap<number, number>): number {
  let best = nodes[0] as number;
  for (const id of nodes) {
    if ((load.get(id) ?? 0) < (load.get(best) ?? 0)) best = id;
  }
  return best;
}

function weightOf(channel: PolicyChannel): number {
  return channel.weight ?? 1;
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
