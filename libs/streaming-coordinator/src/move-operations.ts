import { assert } from '@woodstream/common';

/**
 * Progress of an explicit channel move: `pending` until ASSIGNING is persisted with the new
 * term, `removing` while earlier owners drop the channel, `assigning` while the target opens
 * it, then `done` (ASSIGNED to the target at the operation's term) or `failed`.
 */
export type MoveOperationState = 'pending' | 'removing' | 'assigning' | 'done' | 'failed';

/** A move as {@link StreamingCoordinator.getOperation} shows it. A plain snapshot. */
export interface MoveOperation {
  id: string;
  pchannel: string;
  targetNodeId: number;
  state: MoveOperationState;
  /** The term the move assigns; null while pending. */
  term: number | null;
  /** Why it failed; null unless `failed`. */
  reason: string | null;
  createdAtMs: number;
  updatedAtMs: number;
  /** When it reached `done` or `failed`; null before. */
  finishedAtMs: number | null;
}

const ORDER: Readonly<Record<MoveOperationState, number>> = {
  pending: 0,
  removing: 1,
  assigning: 2,
  done: 3,
  failed: 3,
};

/**
 * The last `maxOperations` move operations, in memory only: operations describe what this
 * coordinator process did, and a new leader starts with none (the channel state itself is in
 * the metadata). Oldest entries are forgotten first, finished or not.
 */
export class MoveOperationRegistry {
  // Invariant: size <= maxOperations; insertion order = creation order (oldest first).
  private readonly operations = new Map<string, MoveOperation>();

  constructor(
    private readonly maxOperations: number,
    private readonly now: () => number = Date.now,
  ) {
    assert(Number.isInteger(maxOperations) && maxOperations >= 1, 'maxOperations >= 1');
  }

  create(pchannel: string, targetNodeId: number): MoveOperation {
    const nowMs = this.now();
    const operation: MoveOperation = {
      id: crypto.randomUUID(),
      pchannel,
      targetNodeId,
      state: 'pending',
      term: null,
      reason: null,
      createdAtMs: nowMs,
      updatedAtMs: nowMs,
      finishedAtMs: null,
    };
    this.operations.set(operation.id, operation);
    while (this.operations.size > this.maxOperations) {
      const oldest = this.operations.keys().next().value as string;
      this.operations.delete(oldest);
    }
    return operation;
  }

  /** A copy, or undefined when unknown or already forgotten. */
  get(id: string): MoveOperation | undefined {
    const operation = this.operations.get(id);
    return operation === undefined ? undefined : { ...operation };
  }

  /**
   * Moves an operation forward. Invariants: states only advance (pending → removing →
   * assigning → done|failed), `done` and `failed` are final, and the term is set once.
   * Late or repeated updates are ignored, so callers need not know where the operation is.
   */
  advance(
    id: string,
    state: MoveOperationState,
    details: { term?: number; reason?: string } = {},
  ): void {
    const operation = this.operations.get(id);
    if (operation === undefined) return;
    if (operation.finishedAtMs !== null || ORDER[state] < ORDER[operation.state]) return;
    if (details.term !== undefined) {
      assert(operation.term === null || operation.term === details.term, 'term set twice');
      operation.term = details.term;
    }
    operation.state = state;
    operation.updatedAtMs = this.now();
    if (state === 'done' || state === 'failed') {
      operation.finishedAtMs = operation.updatedAtMs;
      operation.reason = state === 'failed' ? (details.reason ?? 'unknown failure') : null;
    }
  }
}
