import { assert } from '@woodstream/common';
import type { PChannelMeta } from '@woodstream/streaming';

/** Most (term, node) owners remembered per channel; older ones are fenced by their WAL term anyway. */
export const MAX_HISTORY_ENTRIES = 8;

/** A new, never assigned channel record. */
export function initialMeta(name: string): PChannelMeta {
  return {
    name,
    term: 0,
    nodeId: null,
    state: 'UNINITIALIZED',
    history: [],
    lastAssignedAtMs: null,
  };
}

/**
 * ASSIGNING to `nodeId` with term + 1. The current owner (whatever its state, even ASSIGNING:
 * it may have received an Assign) joins the history, so it is told to remove the channel
 * before the new term is assigned. History keeps one entry per node with its highest term (a
 * Remove at term t also supersedes older terms on that node), at most MAX_HISTORY_ENTRIES.
 */
export function beginAssign(meta: PChannelMeta, nodeId: number): PChannelMeta {
  const owners = [...meta.history];
  if (meta.nodeId !== null && meta.state !== 'UNINITIALIZED') {
    owners.push({ term: meta.term, nodeId: meta.nodeId });
  }
  const byNode = new Map<number, number>();
  for (const entry of owners) {
    byNode.set(entry.nodeId, Math.max(entry.term, byNode.get(entry.nodeId) ?? -1));
  }
  const history = [...byNode]
    .map(([node, term]) => ({ term, nodeId: node }))
    .sort((a, b) => a.term - b.term)
    .slice(-MAX_HISTORY_ENTRIES);
  return { ...meta, state: 'ASSIGNING', term: meta.term + 1, nodeId, history };
}

/** ASSIGNING → ASSIGNED at the same term; history cleared because every old owner removed it. */
export function completeAssign(meta: PChannelMeta, nowMs: number): PChannelMeta {
  assert(meta.state === 'ASSIGNING', `completeAssign of ${meta.name} in state ${meta.state}`);
  return { ...meta, state: 'ASSIGNED', history: [], lastAssignedAtMs: nowMs };
}

/**
 * ASSIGNED at `term` → UNAVAILABLE, from a client's error report. Returns undefined for a stale
 * report (another term or state): the channel already moved on, nothing to do.
 */
export function markUnavailable(meta: PChannelMeta, term: number): PChannelMeta | undefined {
  if (meta.state !== 'ASSIGNED' || meta.term !== term) return undefined;
  return { ...meta, state: 'UNAVAILABLE' };
}

/** Checks a record read from metadata; a broken one is a bug or corruption, never retried. */
export function assertMetaInvariants(meta: PChannelMeta): void {
  assert(Number.isSafeInteger(meta.term) && meta.term >= 0, `${meta.name}: bad term ${meta.term}`);
  assert(
    meta.state === 'UNINITIALIZED' ? meta.nodeId === null : meta.nodeId !== null,
    `${meta.name}: state ${meta.state} with node ${String(meta.nodeId)}`,
  );
  assert(
    meta.history.every((h) => h.term <= meta.term),
    `${meta.name}: history has a term above ${meta.term}`,
  );
  assert(meta.history.length <= MAX_HISTORY_ENTRIES, `${meta.name}: history too long`);
}

/** Parses a stored PChannelMeta; throws on anything that is not one. */
export function decodeMeta(bytes: Uint8Array): PChannelMeta {
  const raw = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<PChannelMeta>;
  assert(typeof raw.name === 'string', 'PChannelMeta without a name');
  const meta: PChannelMeta = {
    name: raw.name,
    term: raw.term ?? 0,
    nodeId: raw.nodeId ?? null,
    state: raw.state ?? 'UNINITIALIZED',
    history: Array.isArray(raw.history) ? raw.history : [],
    lastAssignedAtMs: raw.lastAssignedAtMs ?? null,
  };
  assertMetaInvariants(meta);
  return meta;
}

export function encodeJson(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value), 'utf8');
}
