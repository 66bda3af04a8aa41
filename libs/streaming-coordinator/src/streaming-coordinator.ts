import { abortable, assert, sleep } from '@woodstream/common';
import {
  pchannelName,
  StreamingError,
  streamingKeys,
  toStreamingError,
  type NodeSession,
  type PChannelMeta,
  type PChannelState,
} from '@woodstream/streaming';
import type { Compare, KeyValue, Lease, MetadataStore, WatchEvent } from '@woodstream/woodpecker';
import { planBalance, type PolicyChannel } from './balance-policy.js';
import {
  resolveCoordinatorOptions,
  type CoordinatorOptions,
  type ResolvedCoordinatorOptions,
} from './coordinator-options.js';
import { noopLogger, type CoordinatorLogger } from './coordinator-logger.js';
import { createCoordinatorTelemetry, type CoordinatorTelemetry } from './coordinator-telemetry.js';
import { MoveOperationRegistry, type MoveOperation } from './move-operations.js';
import {
  GrpcNodeManagerClientFactory,
  type NodeCallOptions,
  type NodeManagerClient,
  type NodeManagerClientFactory,
  type NodeStatus,
} from './node-manager-client.js';
import {
  beginAssign,
  completeAssign,
  decodeMeta,
  encodeJson,
  initialMeta,
  markUnavailable,
} from './pchannel-transitions.js';

/** Counter of coordinator activations; the `global` part of the assignment version. */
export const ACTIVATIONS_KEY = streamingKeys.activations;

/** What a coordinator needs from its process. */
export interface CoordinatorDeps {
  /** All coordinator state lives here; the coordinator keeps nothing a restart would lose. */
  metadata: MetadataStore;
  /** Clients of the nodes' ManagerService. @default a GrpcNodeManagerClientFactory, closed on stop */
  managerClients?: NodeManagerClientFactory;
  logger?: CoordinatorLogger;
}

/** Lifecycle of a coordinator: only the ACTIVE one balances and serves assignments. */
export type CoordinatorRole = 'STANDBY' | 'ACTIVE' | 'STOPPED';

/** Orders assignment snapshots: `global` first (grows per activation), then `local`. */
export interface AssignmentVersion {
  global: number;
  local: number;
}

/** What AssignmentDiscover publishes: only ASSIGNED channels whose node has a session. */
export interface AssignmentSnapshot {
  readonly version: AssignmentVersion;
  /** All pchannels of the cluster, index i = pchannel i; fixed at cluster creation. */
  readonly pchannels: readonly string[];
  readonly assignments: readonly {
    node: { serverId: number; address: string };
    channels: readonly { name: string; term: number }[];
  }[];
}

/** Persisted admin settings (`coord/settings`). */
export interface CoordinatorSettings {
  /** When false, healthy channels stay where they are; lost ones are still re-placed. */
  allowRebalance: boolean;
  /** Nodes that get no channels; their channels are drained. Sorted, unique. */
  frozenNodeIds: number[];
}

/** A node as {@link StreamingCoordinator.listNodes} shows it. */
export interface NodeView {
  serverId: number;
  address: string;
  version: string;
  stopping: boolean;
  frozen: boolean;
  /** Session present, not stopping, not frozen: may receive channels. */
  healthy: boolean;
  /** Channels ASSIGNED to the node. */
  channels: string[];
  /** Vchannels registered on those channels (what the node carries besides its WALs). */
  vchannelCount: number;
}

/** A pchannel as {@link StreamingCoordinator.listChannels} shows it. */
export interface ChannelView {
  name: string;
  state: PChannelState;
  term: number;
  nodeId: number | null;
  history: { term: number; nodeId: number }[];
  lastAssignedAtMs: number | null;
  /** Vchannels registered on the channel (`coord/vchannel/<name>/`); the service never removes one. */
  vchannelCount: number;
  /** RUNNING: an assignment task drives it now; BACKOFF: the last one failed and waits. */
  task: 'IDLE' | 'RUNNING' | 'BACKOFF';
  failedAttempts: number;
  lastError: string | null;
}

/** A summary for health checks and the admin API. */
export interface CoordinatorStatus {
  coordinatorId: string;
  role: CoordinatorRole;
  /** Coordinator id in the leader key, when one is known. */
  leaderId: string | null;
  pchannelCount: number;
  version: AssignmentVersion;
  nodes: number;
  healthyNodes: number;
  channelsByState: Record<PChannelState, number>;
  settings: CoordinatorSettings;
}

/** A watch event other than a reset. */
type ChangeEvent = Exclude<WatchEvent, { type: 'reset' }>;

interface MetaEntry {
  meta: PChannelMeta;
  /** 0 when the key does not exist yet (create-if-absent). */
  modRevision: number;
}

interface NodeEntry {
  session: NodeSession;
  modRevision: number;
}

interface LeaderState {
  lease: Lease;
  /** Fencing token: every write of the active coordinator compares the leader key against it. */
  modRevision: number;
}

interface ChannelTask {
  readonly controller: AbortController;
  /** The node the channel is being given. */
  targetNodeId: number;
  /** The node an RPC is in flight to, so losing that node aborts the call at once. */
  callingNodeId: number | null;
  /** Settles (never rejects) when the task ended and left `tasks`. */
  done: Promise<void>;
  /** How far the task got; reported to its move operation. */
  phase: 'pending' | 'removing' | 'assigning';
  /** The explicit move this task carries out, if any (at most one per task). */
  operationId: string | undefined;
}

interface ChannelRetry {
  /** Failed attempts since the channel was last assigned: they set the backoff. */
  failedAttempts: number;
  notBeforeMs: number;
  lastError: string;
  /** The node whose Assign failed last, and how many Assigns in a row failed on it. */
  failedNodeId: number | null;
  failedAssignsOnNode: number;
  /** A node given up on (ATTEMPTS_BEFORE_ANOTHER_NODE failed Assigns): not chosen again until the channel is assigned. */
  avoidNodeId: number | null;
}

/**
 * Failed attempts to open a channel on one node before it is placed on another (with a new
 * term), when another healthy node exists. Earlier retries keep the term: a passing failure
 * does not move the channel.
 */
const ATTEMPTS_BEFORE_ANOTHER_NODE = 3;

/** Abort reason of a task whose node went away: re-plan at once, without backoff. */
class NodeLostError extends Error {
  constructor(nodeId: number) {
    super(`node ${nodeId} lost`);
    this.name = 'NodeLostError';
  }
}

const SETTINGS_CAS_ATTEMPTS = 16;
const CAMPAIGN_RETRY_MS = 500;
const WATCH_RESTART_MS = 500;

/**
 * The streaming coordinator: discovers nodes from their session keys, assigns every pchannel
 * to a healthy node through a persisted per-channel state machine, balances, and publishes the
 * assignment to AssignmentDiscover streams.
 *
 * Active-standby: every coordinator keeps a live view of the metadata, but only the one holding
 * the lease-bound `coord/leader` key is ACTIVE. Each of its metadata writes compares that key's
 * modRevision, so a deposed leader can never overwrite its successor (terms only grow).
 *
 * Per channel, metadata is written BEFORE acting (the metadata is the WAL of assignments):
 * ASSIGNING(term+1, node, history) → Remove(old term) on every live earlier owner →
 * Assign(new term) on the node → ASSIGNED → publish. Every channel runs as its own task with its
 * own backoff, so one slow or failing channel never holds up the others.
 */
export class StreamingCoordinator {
  private role: CoordinatorRole | 'STARTING' = 'STARTING';
  private readonly root = new AbortController();
  private readonly log: CoordinatorLogger;
  private readonly telemetry: CoordinatorTelemetry;
  private readonly clients: NodeManagerClientFactory;
  private readonly ownsClients: boolean;
  /** Index i = pchannel i; read from `coord/cluster`, never changes. */
  private pchannels: readonly string[] = [];
  private readonly pchannelSet = new Set<string>();
  private readonly metas = new Map<string, MetaEntry>();
  /**
   * Registered vchannels per pchannel, from the `coord/vchannel/` keys in the watched view.
   * Invariant: equals the number of those keys at the view's revision (rebuilt on every reset,
   * then +1 per creating put, −1 per delete). Keys of unknown pchannels are not counted.
   */
  private readonly vchannelCounts = new Map<string, number>();
  private readonly nodes = new Map<number, NodeEntry>();
  private settings: CoordinatorSettings = { allowRebalance: true, frozenNodeIds: [] };
  private settingsRevision = 0;
  private leaderKv: { coordinatorId: string | null; modRevision: number } | undefined;
  private leader: LeaderState | undefined;
  /** Aborted when this coordinator stops being ACTIVE: ends tasks, timers and streams. */
  private active: AbortController | undefined;
  private globalVersion = 0;
  private localVersion = 0;
  private snapshot: AssignmentSnapshot | undefined;
  private snapshotFingerprint = '';
  private publishScheduled = false;
  /** Wakes AssignmentDiscover streams; one entry per waiting stream (bounded by the stream limit). */
  private readonly waiters = new Set<() => void>();
  /** At most one task per pchannel (bounded by pchannelCount). */
  private readonly tasks = new Map<string, ChannelTask>();
  private readonly retries = new Map<string, ChannelRetry>();
  /** One retry timer per channel at most. */
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  /** Explicit moves started here (bounded by `maxOperations`); not persisted. */
  private readonly operations: MoveOperationRegistry;
  private balanceScheduled = false;
  private isAuditing = false;
  private tickTimer: NodeJS.Timeout | undefined;
  private campaigning = false;
  private campaignAgain = false;
  private readonly loops: Promise<void>[] = [];
  private stopping: Promise<void> | undefined;
  /** Removes the listener on the start signal, so a stopped coordinator is not kept alive by it. */
  private detachSignal: (() => void) | undefined;

  private constructor(
    readonly options: ResolvedCoordinatorOptions,
    private readonly rawOptions: CoordinatorOptions,
    private readonly store: MetadataStore,
    deps: CoordinatorDeps,
  ) {
    this.log = deps.logger ?? noopLogger;
    this.telemetry = createCoordinatorTelemetry(this);
    this.ownsClients = deps.managerClients === undefined;
    this.clients = deps.managerClients ?? new GrpcNodeManagerClientFactory();
    this.operations = new MoveOperationRegistry(options.maxOperations);
  }

  /**
   * Validates options (INVALID_ARGUMENT listing every problem), creates the cluster if absent,
   * loads the metadata view, and competes for leadership. Resolves as soon as the coordinator
   * runs, ACTIVE or STANDBY. `signal` aborts the start; aborting it later stops the coordinator.
   */
  static async start(
    options: CoordinatorOptions,
    deps: CoordinatorDeps,
    signal?: AbortSignal,
  ): Promise<StreamingCoordinator> {
    const resolved = resolveCoordinatorOptions(options);
    signal?.throwIfAborted();
    const coordinator = new StreamingCoordinator(resolved, options, deps.metadata, deps);
    const onAbort = (): void => void coordinator.stop();
    signal?.addEventListener('abort', onAbort, { once: true });
    coordinator.detachSignal = () => signal?.removeEventListener('abort', onAbort);
    try {
      await coordinator.boot(signal);
    } catch (err) {
      await coordinator.stop();
      throw err;
    }
    return coordinator;
  }

  /** Whether this coordinator holds the leader key and drives assignments. */
  get isActive(): boolean {
    return this.role === 'ACTIVE';
  }

  /** The AssignmentDiscover stream limit, for the gRPC handlers. */
  get maxDiscoverStreams(): number {
    return this.options.maxDiscoverStreams;
  }

  status(): CoordinatorStatus {
    const channelsByState: Record<PChannelState, number> = {
      UNINITIALIZED: 0,
      ASSIGNING: 0,
      ASSIGNED: 0,
      UNAVAILABLE: 0,
    };
    for (const name of this.pchannels) channelsByState[this.metaOf(name).meta.state]++;
    return {
      coordinatorId: this.options.coordinatorId,
      role: this.role === 'STARTING' ? 'STANDBY' : this.role,
      leaderId: this.leaderKv?.coordinatorId ?? null,
      pchannelCount: this.pchannels.length,
      version: { global: this.globalVersion, local: this.localVersion },
      nodes: this.nodes.size,
      healthyNodes: this.healthyNodeIds().length,
      channelsByState,
      settings: this.currentSettings(),
    };
  }

  currentSettings(): CoordinatorSettings {
    return {
      allowRebalance: this.settings.allowRebalance,
      frozenNodeIds: [...this.settings.frozenNodeIds],
    };
  }

  /** Nodes with a session, by server id. Plain objects; a snapshot of this coordinator's view. */
  listNodes(): NodeView[] {
    const frozen = new Set(this.settings.frozenNodeIds);
    const channels = new Map<number, string[]>();
    const vchannels = new Map<number, number>();
    for (const name of this.pchannels) {
      const { meta } = this.metaOf(name);
      if (meta.state === 'ASSIGNED' && meta.nodeId !== null) {
        channels.set(meta.nodeId, [...(channels.get(meta.nodeId) ?? []), name]);
        vchannels.set(meta.nodeId, (vchannels.get(meta.nodeId) ?? 0) + this.vchannelCountOf(name));
      }
    }
    return [...this.nodes.values()]
      .map(({ session }) => ({
        serverId: session.serverId,
        address: session.address,
        version: session.version,
        stopping: session.stopping,
        frozen: frozen.has(session.serverId),
        healthy: this.isHealthy(session.serverId),
        channels: channels.get(session.serverId) ?? [],
        vchannelCount: vchannels.get(session.serverId) ?? 0,
      }))
      .sort((a, b) => a.serverId - b.serverId);
  }

  /** Every pchannel in cluster order with its persisted state and its task status. */
  listChannels(): ChannelView[] {
    const now = Date.now();
    return this.pchannels.map((name) => {
      const { meta } = this.metaOf(name);
      const retry = this.retries.get(name);
      return {
        name,
        state: meta.state,
        term: meta.term,
        nodeId: meta.nodeId,
        history: meta.history.map((h) => ({ ...h })),
        lastAssignedAtMs: meta.lastAssignedAtMs,
        vchannelCount: this.vchannelCountOf(name),
        task: this.tasks.has(name)
          ? 'RUNNING'
          : retry !== undefined && retry.notBeforeMs > now
            ? 'BACKOFF'
            : 'IDLE',
        failedAttempts: retry?.failedAttempts ?? 0,
        lastError: retry?.lastError ?? null,
      };
    });
  }

  /** The snapshot AssignmentDiscover would push now; undefined unless ACTIVE. */
  currentAssignment(): AssignmentSnapshot | undefined {
    return this.role === 'ACTIVE' ? this.snapshot : undefined;
  }

  /**
   * Yields the current assignment snapshot, then every newer one. Bursts coalesce: a slow
   * reader skips to the latest snapshot (nothing is queued). Throws ON_SHUTDOWN when this
   * coordinator is or becomes not ACTIVE (the client re-resolves the active one), and
   * `signal.reason` when aborted.
   */
  async *assignments(signal: AbortSignal): AsyncGenerator<AssignmentSnapshot, void, undefined> {
    let last: AssignmentSnapshot | undefined;
    for (;;) {
      signal.throwIfAborted();
      if (this.role !== 'ACTIVE') {
        throw new StreamingError('ON_SHUTDOWN', 'this coordinator is not the active one');
      }
      const current = this.snapshot;
      if (current !== undefined && current !== last) {
        last = current;
        yield current;
        continue;
      }
      await this.nextChange(signal);
    }
  }

  /** Runs a balance round soon (coalesced with other triggers). No-op unless ACTIVE. */
  triggerBalance(): void {
    if (this.role !== 'ACTIVE' || this.balanceScheduled) return;
    this.balanceScheduled = true;
    // A macrotask later, so that a burst of triggers (watch batch, many reports) makes one round.
    setImmediate(() => {
      this.balanceScheduled = false;
      this.balanceRound();
    });
  }

  /**
   * A client's report that `pchannel` at `term` misbehaves. If the channel is still ASSIGNED at
   * that term it becomes UNAVAILABLE (persisted) and a balance round re-places it; stale
   * reports return 'STALE'. Throws ON_SHUTDOWN unless ACTIVE.
   */
  async reportChannelError(
    pchannel: string,
    term: number,
    options: { signal?: AbortSignal } = {},
  ): Promise<'MARKED' | 'STALE'> {
    this.requireActive();
    const entry = this.metas.get(pchannel);
    if (entry === undefined || this.tasks.has(pchannel)) return 'STALE';
    const next = markUnavailable(entry.meta, term);
    if (next === undefined) return 'STALE';
    const signal = this.activeSignal(options.signal);
    await this.writeMeta(entry, next, signal);
    this.log.info('pchannel marked unavailable', { pchannel, term });
    this.publish();
    this.triggerBalance();
    return 'MARKED';
  }

  /** Persists `allowRebalance`; survives restarts. Works on any coordinator (CAS on the key). */
  async setAllowRebalance(allow: boolean, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (typeof allow !== 'boolean') {
      throw new StreamingError('INVALID_ARGUMENT', 'allowRebalance must be a boolean');
    }
    await this.updateSettings((s) => ({ ...s, allowRebalance: allow }), options.signal);
  }

  /** Persists the freeze: the node gets no channels and its channels are drained. Idempotent. */
  async freezeNode(serverId: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    checkNodeId(serverId);
    await this.updateSettings(
      (s) => ({
        ...s,
        frozenNodeIds: [...new Set([...s.frozenNodeIds, serverId])].sort((a, b) => a - b),
      }),
      options.signal,
    );
  }

  /** Lifts a freeze. Idempotent. */
  async unfreezeNode(serverId: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    checkNodeId(serverId);
    await this.updateSettings(
      (s) => ({ ...s, frozenNodeIds: s.frozenNodeIds.filter((id) => id !== serverId) }),
      options.signal,
    );
  }

  /**
   * Moves `pchannel` to `targetNodeId` now, ignoring the cooldown and `allowRebalance`. Resolves
   * with the new term once ASSIGNING is persisted; follow progress with {@link listChannels}.
   * Already assigned there ⇒ the current term, nothing moves. Throws CHANNEL_NOT_EXIST for an
   * unknown channel, INVALID_ARGUMENT for a node that is not healthy, ON_SHUTDOWN unless ACTIVE.
   */
  async moveChannel(
    pchannel: string,
    targetNodeId: number,
    options: { signal?: AbortSignal } = {},
  ): Promise<number> {
    this.checkMove(pchannel, targetNodeId);
    const claim = await this.claimChannel(pchannel, targetNodeId, options.signal);
    if (claim !== undefined) return this.metaOf(pchannel).meta.term;
    this.clearRetry(pchannel);
    const persisted = this.startTask(pchannel, targetNodeId);
    const term = await (options.signal === undefined
      ? persisted
      : abortable(persisted, options.signal));
    return term;
  }

  /**
   * Starts moving `pchannel` to `targetNodeId` like {@link moveChannel} and returns at once with
   * an operation to follow with {@link getOperation}; a failure after the checks below shows
   * as a `failed` operation. A move already heading to the target is joined (same operation
   * id when it has one); a channel already ASSIGNED there gives a `done` operation. Throws
   * CHANNEL_NOT_EXIST for an unknown channel, INVALID_ARGUMENT for a node that is not healthy,
   * ON_SHUTDOWN unless ACTIVE, RESOURCE_EXHAUSTED when the channel stays busy.
   */
  async startMove(
    pchannel: string,
    targetNodeId: number,
    options: { signal?: AbortSignal } = {},
  ): Promise<{ operationId: string }> {
    this.checkMove(pchannel, targetNodeId);
    const claim = await this.claimChannel(pchannel, targetNodeId, options.signal);
    if (claim !== undefined && claim !== 'ASSIGNED' && claim.operationId !== undefined) {
      return { operationId: claim.operationId };
    }
    const operation = this.operations.create(pchannel, targetNodeId);
    if (claim === 'ASSIGNED') {
      this.operations.advance(operation.id, 'done', { term: this.metaOf(pchannel).meta.term });
    } else if (claim !== undefined) {
      claim.operationId = operation.id;
      this.setPhase(claim, claim.phase, this.metaOf(pchannel).meta.term);
    } else {
      this.clearRetry(pchannel);
      // The outcome, including a failed ASSIGNING write, is reported through the operation.
      void this.startTask(pchannel, targetNodeId, operation.id).catch(() => undefined);
    }
    return { operationId: operation.id };
  }

  /**
   * A move operation started on this coordinator process; undefined when unknown or forgotten
   * (only the last `maxOperations` are kept, and a restarted or new leader starts with none).
   */
  getOperation(operationId: string): MoveOperation | undefined {
    return this.operations.get(operationId);
  }

  /**
   * Stops: aborts tasks, ends AssignmentDiscover streams with ON_SHUTDOWN, revokes the leader
   * lease (a standby takes over at once) and closes the node clients it created. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private checkMove(pchannel: string, targetNodeId: number): void {
    this.requireActive();
    if (!this.pchannelSet.has(pchannel)) {
      throw new StreamingError('CHANNEL_NOT_EXIST', `no pchannel ${JSON.stringify(pchannel)}`);
    }
    checkNodeId(targetNodeId);
    if (!this.isHealthy(targetNodeId)) {
      throw new StreamingError(
        'INVALID_ARGUMENT',
        `node ${targetNodeId} is not healthy (no session, stopping or frozen)`,
      );
    }
  }

  /**
   * Makes way for an explicit move of `pchannel` to `targetNodeId`: returns the running task
   * when it already heads there, 'ASSIGNED' when the channel is there, or undefined once no
   * task runs (a task heading elsewhere is aborted: an explicit move wins over the balancer).
   */
  private async claimChannel(
    pchannel: string,
    targetNodeId: number,
    signal: AbortSignal | undefined,
  ): Promise<ChannelTask | 'ASSIGNED' | undefined> {
    // Bounded: a round may start a new task between our awaits, but not forever.
    for (let attempt = 0; ; attempt++) {
      const running = this.tasks.get(pchannel);
      if (running === undefined) break;
      if (running.targetNodeId === targetNodeId) return running;
      if (attempt >= 3) {
        throw new StreamingError('RESOURCE_EXHAUSTED', `pchannel ${pchannel} is busy; try again`);
      }
      running.controller.abort(
        new StreamingError('IGNORED_OPERATION', 'superseded by an explicit move'),
      );
      await abortable(running.done, signal);
      this.requireActive();
    }
    const { meta } = this.metaOf(pchannel);
    return meta.state === 'ASSIGNED' && meta.nodeId === targetNodeId ? 'ASSIGNED' : undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Startup

  private async boot(signal: AbortSignal | undefined): Promise<void> {
    const bootSignal =
      signal === undefined ? this.root.signal : AbortSignal.any([signal, this.root.signal]);
    this.pchannels = await this.ensureCluster(bootSignal);
    for (const name of this.pchannels) this.pchannelSet.add(name);
    await this.ensurePChannelMetas(bootSignal);
    // Load both views before competing, so an activation starts from what is stored.
    const coordRevision = await this.loadPrefix(
      'coord/',
      (kvs) => this.resetCoord(kvs),
      bootSignal,
    );
    const nodeRevision = await this.loadPrefix(
      streamingKeys.nodeSessionPrefix,
      (kvs) => this.resetNodes(kvs),
      bootSignal,
    );
    this.role = 'STANDBY';
    this.loops.push(
      this.watchLoop(
        'coord/',
        coordRevision,
        (kvs) => this.resetCoord(kvs),
        (e) => this.applyCoordEvent(e),
      ),
      this.watchLoop(
        streamingKeys.nodeSessionPrefix,
        nodeRevision,
        (kvs) => this.resetNodes(kvs),
        (e) => this.applyNodeEvent(e),
      ),
    );
    // One timer drives both roles: the active balances, a standby re-checks the leader key in
    // case a watch event was missed.
    this.tickTimer = setInterval(() => this.tick(), this.options.balanceIntervalMs);
    await this.campaign();
  }

  /** Creates `coord/cluster` if absent; returns its pchannels (the stored ones win forever). */
  private async ensureCluster(signal: AbortSignal): Promise<string[]> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const kv = await this.store.get(streamingKeys.cluster, { signal });
      if (kv !== undefined) {
        const cluster = JSON.parse(Buffer.from(kv.value).toString('utf8')) as {
          pchannels?: unknown;
        };
        assert(
          Array.isArray(cluster.pchannels) &&
            cluster.pchannels.length > 0 &&
            cluster.pchannels.every((p) => typeof p === 'string'),
          'coord/cluster has no pchannel list',
        );
        const pchannels: string[] = cluster.pchannels;
        if (
          this.rawOptions.pchannelCount !== undefined &&
          this.rawOptions.pchannelCount !== pchannels.length
        ) {
          this.log.warn('configured pchannelCount ignored: the cluster already exists', {
            configured: this.rawOptions.pchannelCount,
            stored: pchannels.length,
          });
        }
        return pchannels;
      }
      const pchannels = Array.from({ length: this.options.pchannelCount }, (_, i) =>
        pchannelName(this.options.pchannelPrefix, i),
      );
      const created = await this.store.txn(
        [{ key: streamingKeys.cluster, modRevision: 0 }],
        [
          {
            type: 'put',
            key: streamingKeys.cluster,
            value: encodeJson({ pchannels, createdAtMs: Date.now() }),
          },
        ],
        { signal },
      );
      if (created.succeeded) {
        this.log.info('cluster created', { pchannelCount: pchannels.length });
        return pchannels;
      }
      // Another coordinator created it first: read theirs.
    }
    throw new StreamingError('INNER', 'could not read or create coord/cluster');
  }

  /** Creates missing PChannelMeta keys (UNINITIALIZED, term 0); a crash after the cluster key is repaired here. */
  private async ensurePChannelMetas(signal: AbortSignal): Promise<void> {
    const { kvs } = await this.store.range(streamingKeys.pchannelPrefix, { signal });
    const existing = new Set(kvs.map((kv) => kv.key));
    for (const name of this.pchannels) {
      const key = streamingKeys.pchannel(name);
      if (existing.has(key)) continue;
      // One create-if-absent per key: etcd caps operations per txn, and losing a race is fine.
      await this.store.txn(
        [{ key, modRevision: 0 }],
        [{ type: 'put', key, value: encodeJson(initialMeta(name)) }],
        { signal },
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // Metadata views (watches)

  private async loadPrefix(
    prefix: string,
    reset: (kvs: KeyValue[]) => void,
    signal: AbortSignal,
  ): Promise<number> {
    const { kvs, revision } = await this.store.range(prefix, { signal });
    reset(kvs);
    return revision;
  }

  /** Follows `prefix` until stop; a failed watch is re-listed (reset) and resumed. */
  private async watchLoop(
    prefix: string,
    fromRevision: number,
    reset: (kvs: KeyValue[]) => void,
    apply: (event: ChangeEvent) => void,
  ): Promise<void> {
    const signal = this.root.signal;
    let revision = fromRevision;
    while (!signal.aborted) {
      try {
        for await (const batch of this.store.watch(prefix, { signal, fromRevision: revision })) {
          for (const event of batch) {
            if (event.type === 'reset') {
              reset(event.kvs);
              revision = event.revision;
            } else {
              apply(event);
              revision = Math.max(
                revision,
                event.type === 'put' ? event.kv.modRevision : event.modRevision,
              );
            }
          }
        }
        if (signal.aborted) return;
        this.log.warn('metadata watch ended; re-listing', { prefix });
      } catch (err) {
        if (signal.aborted) return;
        this.log.warn('metadata watch failed; re-listing', { prefix, error: errorMessage(err) });
      }
      try {
        await sleep(WATCH_RESTART_MS, signal);
        revision = await this.loadPrefix(prefix, reset, signal);
      } catch (err) {
        if (signal.aborted) return;
        this.log.warn('metadata re-list failed', { prefix, error: errorMessage(err) });
      }
    }
  }

  private resetCoord(kvs: KeyValue[]): void {
    const seen = new Set<string>();
    const before = new Map(this.vchannelCounts);
    this.vchannelCounts.clear();
    for (const kv of kvs) {
      seen.add(kv.key);
      if (kv.key.startsWith(streamingKeys.vchannelPrefix)) {
        // Counted from the snapshot, not as events: a reset replays keys already counted.
        this.countVChannel(kv.key, 1);
        continue;
      }
      this.applyCoordEvent({ type: 'put', kv });
    }
    if (
      before.size !== this.vchannelCounts.size ||
      [...this.vchannelCounts].some(([name, count]) => before.get(name) !== count)
    ) {
      this.vchannelsChanged();
    }
    if (!seen.has(streamingKeys.coordinatorLeader)) {
      this.applyCoordEvent({
        type: 'delete',
        key: streamingKeys.coordinatorLeader,
        modRevision: Number.MAX_SAFE_INTEGER,
      });
    }
    // pchannel keys cannot be deleted by anyone but an operator wiping the cluster; keep the view.
  }

  private applyCoordEvent(event: ChangeEvent): void {
    const key = event.type === 'put' ? event.kv.key : event.key;
    if (key === streamingKeys.coordinatorLeader) {
      this.applyLeaderEvent(event);
    } else if (key === streamingKeys.settings && event.type === 'put') {
      if (event.kv.modRevision > this.settingsRevision) {
        this.applySettings(decodeSettings(event.kv.value), event.kv.modRevision);
      }
    } else if (key.startsWith(streamingKeys.vchannelPrefix)) {
      // Only a creation adds a vchannel; a later put of the same key (version > 1) does not.
      const delta = event.type === 'delete' ? -1 : event.kv.version === 1 ? 1 : 0;
      if (delta !== 0 && this.countVChannel(key, delta)) this.vchannelsChanged();
    } else if (key.startsWith(streamingKeys.pchannelPrefix) && event.type === 'put') {
      let meta: PChannelMeta;
      try {
        meta = decodeMeta(event.kv.value);
      } catch (err) {
        this.log.error('unreadable pchannel record', { key, error: errorMessage(err) });
        return;
      }
      const known = this.metas.get(meta.name);
      // Our own writes come back here too; only newer revisions replace what we know.
      if (known === undefined || event.kv.modRevision > known.modRevision) {
        this.metas.set(meta.name, { meta, modRevision: event.kv.modRevision });
        if (this.role === 'ACTIVE') this.publish();
      }
    }
  }

  /** Adds `delta` to the count of the pchannel of registry key `key`; false if not counted. */
  private countVChannel(key: string, delta: 1 | -1): boolean {
    const rest = key.slice(streamingKeys.vchannelPrefix.length);
    const slash = rest.indexOf('/');
    const pchannel = slash > 0 ? rest.slice(0, slash) : '';
    // A key of a pchannel outside the cluster (an operator's leftover) is ignored.
    if (!this.pchannelSet.has(pchannel) || slash === rest.length - 1) return false;
    const next = (this.vchannelCounts.get(pchannel) ?? 0) + delta;
    assert(next >= 0, `vchannel count of ${pchannel} below 0`);
    this.vchannelCounts.set(pchannel, next);
    return true;
  }

  private vchannelCountOf(pchannel: string): number {
    return this.vchannelCounts.get(pchannel) ?? 0;
  }

  /**
   * Counts feed the balance policy: re-plan. Coalesced, so a burst of first produces makes one
   * round; the round moves at most maxMovesPerRound channels, off their cooldown.
   */
  private vchannelsChanged(): void {
    if (this.role === 'ACTIVE') this.triggerBalance();
  }

  private applyLeaderEvent(event: ChangeEvent): void {
    if (event.type === 'put') {
      let coordinatorId: string | null = null;
      try {
        coordinatorId =
          (JSON.parse(Buffer.from(event.kv.value).toString('utf8')) as { coordinatorId?: string })
            .coordinatorId ?? null;
      } catch {
        // An unreadable leader record still holds the key; who it is does not matter for safety.
      }
      this.leaderKv = { coordinatorId, modRevision: event.kv.modRevision };
      if (this.leader !== undefined && event.kv.modRevision > this.leader.modRevision) {
        this.demote('another coordinator holds the leader key');
      }
      return;
    }
    this.leaderKv = undefined;
    if (this.leader !== undefined && event.modRevision > this.leader.modRevision) {
      this.demote('the leader key was deleted');
    }
    if (this.role === 'STANDBY') void this.campaign();
  }

  private resetNodes(kvs: KeyValue[]): void {
    const before = new Map(this.nodes);
    this.nodes.clear();
    for (const kv of kvs) {
      const session = decodeSession(kv.value);
      if (session === undefined) {
        this.log.warn('unreadable node session ignored', { key: kv.key });
        continue;
      }
      this.nodes.set(session.serverId, { session, modRevision: kv.modRevision });
    }
    this.nodesChanged(before);
  }

  private applyNodeEvent(event: ChangeEvent): void {
    const before = new Map(this.nodes);
    if (event.type === 'put') {
      const session = decodeSession(event.kv.value);
      if (session === undefined) {
        this.log.warn('unreadable node session ignored', { key: event.kv.key });
        return;
      }
      this.nodes.set(session.serverId, { session, modRevision: event.kv.modRevision });
    } else {
      const id = Number(event.key.slice(streamingKeys.nodeSessionPrefix.length));
      if (Number.isInteger(id)) this.nodes.delete(id);
    }
    this.nodesChanged(before);
  }

  private nodesChanged(before: Map<number, NodeEntry>): void {
    for (const [id, entry] of before) {
      const now = this.nodes.get(id);
      if (now === undefined) {
        this.log.info('node left', { serverId: id, address: entry.session.address });
        this.abortTasksOf(id, true);
      } else if (!now.session.stopping && entry.session.stopping) {
        // no-op: a node never un-stops in practice, but nothing breaks if it does
      } else if (now.session.stopping && !entry.session.stopping) {
        this.log.info('node stopping', { serverId: id });
        this.abortTasksOf(id, false);
      }
    }
    for (const [id, entry] of this.nodes) {
      if (!before.has(id))
        this.log.info('node joined', { serverId: id, address: entry.session.address });
    }
    if (this.role === 'ACTIVE') {
      this.publish();
      this.triggerBalance();
    }
  }

  /**
   * Aborts tasks that wait on `nodeId`: those giving it a channel when it is no longer healthy,
   * and (when its session is gone) any call in flight to it — a node without a session counts
   * as having removed its channels.
   */
  private abortTasksOf(nodeId: number, isGone: boolean): void {
    for (const task of this.tasks.values()) {
      if (task.targetNodeId === nodeId || (isGone && task.callingNodeId === nodeId)) {
        task.controller.abort(new NodeLostError(nodeId));
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Leadership

  private tick(): void {
    if (this.role === 'ACTIVE') {
      this.balanceRound();
      void this.auditNodes();
    } else if (this.role === 'STANDBY' && this.leaderKv === undefined) void this.campaign();
  }

  /**
   * Asks every live node which channels it holds (CollectStatus) and re-places each channel that
   * is ASSIGNED to a node that does not hold it at that term: its WAL failed or was fenced, or
   * the node restarted under the same id. Without this, such a channel waits until a client
   * tries it and reports. Nodes are asked in parallel, each on its own: one that does not answer
   * delays nothing (its session decides whether it is alive). One audit runs at a time.
   */
  private async auditNodes(): Promise<void> {
    if (this.role !== 'ACTIVE' || this.isAuditing) return;
    this.isAuditing = true;
    const signal = this.activeSignal();
    const timeoutMs = this.options.operationTimeoutMs;
    try {
      await Promise.all(
        [...this.nodes].map(async ([nodeId, node]) => {
          if (node.session.stopping) return; // being drained by the balance rounds
          const askedAtMs = Date.now();
          let status: NodeStatus;
          try {
            status = await this.clients.get(node.session.address).collectStatus({
              signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
              deadline: askedAtMs + timeoutMs,
            });
          } catch (err) {
            if (!signal.aborted)
              this.log.debug('node status not collected', { nodeId, error: errorMessage(err) });
            return;
          }
          const held = new Map(status.channels.map((c) => [c.name, c.term]));
          await this.removeStaleCopies(nodeId, node.session.address, held, askedAtMs, signal);
          for (const [name, { meta }] of this.metas) {
            if (meta.state !== 'ASSIGNED' || meta.nodeId !== nodeId || this.tasks.has(name))
              continue;
            // Assigned since the question was asked: the answer may predate the assignment.
            if (meta.lastAssignedAtMs === null || meta.lastAssignedAtMs >= askedAtMs) continue;
            if (held.get(name) === meta.term) continue;
            this.log.warn('node does not hold its channel; re-placing it', {
              pchannel: name,
              nodeId,
              term: meta.term,
              heldTerm: held.get(name) ?? null,
            });
            this.telemetry.recordChannelNotHeld();
            try {
              await this.reportChannelError(name, meta.term, { signal });
            } catch (err) {
              if (signal.aborted) return;
              this.log.warn('could not mark the channel unavailable', {
                pchannel: name,
                error: errorMessage(err),
              });
            }
          }
        }),
      );
    } finally {
      this.isAuditing = false;
    }
  }

  /**
   * Closes what a node holds that belongs elsewhere: a channel assigned to another node, or to
   * this one at a later term. A node that lost its session is skipped by the move (its WAL is
   * fenced by the new term), but an idle WAL does not write, so it would not learn of the fence
   * and would keep its consumers waiting. Remove at the held term closes only that copy.
   */
  private async removeStaleCopies(
    nodeId: number,
    address: string,
    held: ReadonlyMap<string, number>,
    askedAtMs: number,
    signal: AbortSignal,
  ): Promise<void> {
    const stale = [...held].filter(([name, term]) => {
      const meta = this.metas.get(name)?.meta;
      if (meta === undefined || this.tasks.has(name)) return false;
      // Assigned since the question was asked: the answer may predate the assignment.
      if (meta.lastAssignedAtMs !== null && meta.lastAssignedAtMs >= askedAtMs) return false;
      const isCurrent = meta.nodeId === nodeId && meta.term === term;
      return !isCurrent && term <= meta.term;
    });
    // In parallel: bounded by the pchannel count, each call on its own deadline.
    await Promise.all(
      stale.map(async ([name, term]) => {
        const meta = this.metaOf(name).meta;
        try {
          await this.clients.get(address).remove(name, term, {
            signal: AbortSignal.any([signal, AbortSignal.timeout(this.options.operationTimeoutMs)]),
            deadline: Date.now() + this.options.operationTimeoutMs,
          });
        } catch (err) {
          if (!signal.aborted)
            this.log.debug('stale copy not removed; the next round tries again', {
              pchannel: name,
              nodeId,
              error: errorMessage(err),
            });
          return;
        }
        this.log.warn('removed the copy of a channel that belongs elsewhere from a node', {
          pchannel: name,
          nodeId,
          heldTerm: term,
          term: meta.term,
          ownerNodeId: meta.nodeId,
        });
        this.telemetry.recordStaleCopyRemoved();
      }),
    );
  }

  /**
   * Tries to take the leader key (create-if-absent, bound to a fresh lease) and bump the
   * activation counter in the same txn. Never throws: failures are logged and retried by the
   * tick; a request that arrives while a campaign runs makes it run once more.
   */
  private async campaign(): Promise<void> {
    if (this.campaigning) {
      this.campaignAgain = true;
      return;
    }
    this.campaigning = true;
    try {
      do {
        this.campaignAgain = false;
        if (this.role !== 'STANDBY' && this.role !== 'STARTING') return;
        await this.campaignOnce();
      } while (this.campaignAgain && this.role === 'STANDBY');
    } catch (err) {
      if (!this.root.signal.aborted) {
        this.log.warn('leader campaign failed; retrying', { error: errorMessage(err) });
        const timer = setTimeout(() => void this.campaign(), CAMPAIGN_RETRY_MS);
        this.root.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
      }
    } finally {
      this.campaigning = false;
    }
  }

  private async campaignOnce(): Promise<void> {
    const signal = this.root.signal;
    const current = await this.store.get(streamingKeys.coordinatorLeader, { signal });
    if (current !== undefined) return; // standby; the watch says when the key goes away
    const activations = await this.store.get(ACTIVATIONS_KEY, { signal });
    const count =
      activations === undefined ? 0 : Number(Buffer.from(activations.value).toString('utf8'));
    assert(Number.isSafeInteger(count) && count >= 0, `bad ${ACTIVATIONS_KEY} value`);
    const lease = await this.store.grantLease(this.options.sessionTtlMs, { signal });
    let won = false;
    try {
      const result = await this.store.txn(
        [
          { key: streamingKeys.coordinatorLeader, modRevision: 0 },
          { key: ACTIVATIONS_KEY, modRevision: activations?.modRevision ?? 0 },
        ],
        [
          {
            type: 'put',
            key: streamingKeys.coordinatorLeader,
            leaseId: lease.id,
            value: encodeJson({
              coordinatorId: this.options.coordinatorId,
              version: this.options.version,
              activation: count + 1,
              sinceMs: Date.now(),
            }),
          },
          { type: 'put', key: ACTIVATIONS_KEY, value: Buffer.from(String(count + 1), 'utf8') },
        ],
        { signal },
      );
      if (!result.succeeded) {
        this.campaignAgain = true; // lost a race or the counter moved: look again
        return;
      }
      won = true;
      await this.activate({ lease, modRevision: result.revision }, count + 1);
    } finally {
      if (!won) await lease.revoke().catch(() => undefined);
    }
  }

  private async activate(leader: LeaderState, activation: number): Promise<void> {
    if (this.root.signal.aborted) return;
    this.leader = leader;
    this.leaderKv = { coordinatorId: this.options.coordinatorId, modRevision: leader.modRevision };
    this.active = new AbortController();
    this.globalVersion = activation;
    this.localVersion = 0;
    this.snapshot = undefined;
    this.snapshotFingerprint = '';
    this.role = 'ACTIVE';
    void leader.lease.lost.then((err) => {
      if (this.leader === leader) {
        this.demote(`leader lease lost: ${err.message}`);
        void this.campaign();
      }
    });
    this.log.info('coordinator active', { coordinatorId: this.options.coordinatorId, activation });
    // The watched view may lag; act on what is stored now.
    try {
      const { kvs } = await this.store.range(streamingKeys.pchannelPrefix, {
        signal: this.active.signal,
      });
      for (const kv of kvs) this.applyCoordEvent({ type: 'put', kv });
    } catch (err) {
      if (this.active.signal.aborted) return;
      this.log.warn('reloading pchannels on activation failed', { error: errorMessage(err) });
    }
    this.publish();
    this.triggerBalance();
  }

  /** Leaves ACTIVE: stops every task and stream; the lease is revoked so a peer can take over. */
  private demote(reason: string): void {
    const leader = this.leader;
    if (leader === undefined) return;
    this.log.warn('coordinator no longer active', { reason });
    this.leader = undefined;
    if (this.role === 'ACTIVE') this.role = 'STANDBY';
    this.active?.abort(new StreamingError('ON_SHUTDOWN', `no longer active: ${reason}`));
    this.active = undefined;
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    this.retries.clear();
    this.wake();
    void leader.lease.revoke().catch(() => undefined);
  }

  private requireActive(): void {
    if (this.role !== 'ACTIVE') {
      throw new StreamingError('ON_SHUTDOWN', 'this coordinator is not the active one');
    }
  }

  private activeSignal(extra?: AbortSignal): AbortSignal {
    const active = this.active;
    assert(active !== undefined, 'activeSignal outside ACTIVE');
    return extra === undefined ? active.signal : AbortSignal.any([active.signal, extra]);
  }

  // -------------------------------------------------------------------------------------------
  // Balancing and per-channel tasks

  private balanceRound(): void {
    if (this.role !== 'ACTIVE') return;
    const started = performance.now();
    const now = Date.now();
    const healthy = this.healthyNodeIds();
    const healthySet = new Set(healthy);
    const channels: PolicyChannel[] = this.pchannels.map((name) => {
      const { meta } = this.metaOf(name);
      const task = this.tasks.get(name);
      const retry = this.retries.get(name);
      const isBusy = task !== undefined || (retry !== undefined && retry.notBeforeMs > now);
      // Its WAL keeps failing to open on that node (storage or disk trouble there, say) while
      // another node could take it: place it again, elsewhere, with a new term.
      const avoidNodeId = retry?.avoidNodeId ?? null;
      const isStuck =
        task === undefined &&
        meta.state === 'ASSIGNING' &&
        meta.nodeId !== null &&
        meta.nodeId === avoidNodeId &&
        healthy.some((id) => id !== meta.nodeId);
      let nodeId: number | null = null;
      if (task !== undefined) {
        nodeId = healthySet.has(task.targetNodeId) ? task.targetNodeId : null;
      } else if (
        (meta.state === 'ASSIGNED' || meta.state === 'ASSIGNING') &&
        meta.nodeId !== null &&
        !isStuck
      ) {
        nodeId = healthySet.has(meta.nodeId) ? meta.nodeId : null;
      }
      return {
        name,
        nodeId,
        isMovable: !isBusy,
        lastAssignedAtMs: meta.lastAssignedAtMs,
        vchannelCount: this.vchannelCountOf(name),
        ...(avoidNodeId === null ? {} : { avoidNodeId }),
      };
    });
    const moves = planBalance({
      channels,
      healthyNodeIds: healthy,
      allowRebalance: this.settings.allowRebalance,
      maxMovesPerRound: this.options.maxMovesPerRound,
      moveCooldownMs: this.options.moveCooldownMs,
      nowMs: now,
    });
    const moved = new Set<string>();
    for (const move of moves) {
      // An assignment event: info (a round makes at most maxMovesPerRound of them).
      this.log.info('balance move', {
        pchannel: move.channel,
        nodeId: move.nodeId,
        reason: move.reason,
      });
      moved.add(move.channel);
      void this.startTask(move.channel, move.nodeId).catch(() => undefined);
    }
    // Channels left ASSIGNING (by a crash, a failed attempt or the previous leader) on a healthy
    // node are driven on to the same term.
    for (const channel of channels) {
      if (moved.has(channel.name) || !channel.isMovable || channel.nodeId === null) continue;
      if (this.metaOf(channel.name).meta.state === 'ASSIGNING') {
        void this.startTask(channel.name, undefined).catch(() => undefined);
      }
    }
    if (healthy.length === 0 && channels.some((c) => c.nodeId === null)) {
      this.log.debug('no healthy node; channels wait for the next round');
    }
    this.telemetry.recordBalanceRound(performance.now() - started, moves.length);
  }

  /**
   * Starts the assignment task of `name`: with `targetNodeId`, first persists ASSIGNING with a
   * new term; without, continues the persisted ASSIGNING record. Resolves with the term once
   * ASSIGNING is persisted (the rest runs on); rejects if that write fails.
   */
  private startTask(
    name: string,
    targetNodeId: number | undefined,
    operationId?: string,
  ): Promise<number> {
    assert(!this.tasks.has(name), `second task for ${name}`);
    const controller = new AbortController();
    const signal = AbortSignal.any([this.activeSignal(), controller.signal]);
    let resolvePersisted!: (term: number) => void;
    let rejectPersisted!: (err: unknown) => void;
    const persisted = new Promise<number>((resolve, reject) => {
      resolvePersisted = resolve;
      rejectPersisted = reject;
    });
    const task: ChannelTask = {
      controller,
      targetNodeId: targetNodeId ?? this.metaOf(name).meta.nodeId ?? -1,
      callingNodeId: null,
      done: Promise.resolve(),
      phase: 'pending',
      operationId,
    };
    const run = this.runTask(name, task, targetNodeId, signal, resolvePersisted).then(
      () => {
        this.clearRetry(name);
        if (task.operationId !== undefined) this.operations.advance(task.operationId, 'done');
      },
      (err: unknown) => {
        rejectPersisted(err);
        if (task.operationId !== undefined) {
          this.operations.advance(task.operationId, 'failed', { reason: errorMessage(err) });
        }
        this.taskFailed(name, err, controller.signal, task);
      },
    );
    task.done = run.finally(() => {
      if (this.tasks.get(name) === task) this.tasks.delete(name);
    });
    this.tasks.set(name, task);
    return persisted;
  }

  private async runTask(
    name: string,
    task: ChannelTask,
    targetNodeId: number | undefined,
    signal: AbortSignal,
    onPersisted: (term: number) => void,
  ): Promise<void> {
    let entry = this.metaOf(name);
    if (targetNodeId !== undefined) {
      entry = await this.writeMeta(entry, beginAssign(entry.meta, targetNodeId), signal);
      this.publish(); // the channel left the published (ASSIGNED) set
    }
    const meta = entry.meta;
    assert(meta.state === 'ASSIGNING' && meta.nodeId !== null, `${name} is not ASSIGNING`);
    task.targetNodeId = meta.nodeId;
    onPersisted(meta.term);
    this.setPhase(task, 'removing', meta.term);

    // Invariant: a new term is assigned only after every live earlier owner removed the channel.
    for (const owner of meta.history) {
      const node = this.nodes.get(owner.nodeId);
      if (node === undefined) continue; // no session: counts as removed; its WAL is fenced by the new term
      try {
        await this.callNode(task, owner.nodeId, node.session.address, signal, (client, o) =>
          client.remove(name, owner.term, o),
        );
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        const code = toStreamingError(err).code;
        if (
          code === 'IGNORED_OPERATION' ||
          code === 'UNMATCHED_CHANNEL_TERM' ||
          code === 'CHANNEL_NOT_EXIST'
        ) {
          continue; // the node does not hold that term (any more): removed
        }
        throw err;
      }
    }
    const target = this.nodes.get(meta.nodeId);
    if (target === undefined) throw new NodeLostError(meta.nodeId);
    this.setPhase(task, 'assigning', meta.term);
    await this.callNode(task, meta.nodeId, target.session.address, signal, (client, o) =>
      client.assign(name, meta.term, o),
    );
    await this.writeMeta(entry, completeAssign(meta, Date.now()), signal);
    this.log.info('pchannel assigned', { pchannel: name, term: meta.term, nodeId: meta.nodeId });
    this.publish();
  }

  private setPhase(task: ChannelTask, phase: ChannelTask['phase'], term: number): void {
    task.phase = phase;
    if (task.operationId === undefined) return;
    this.operations.advance(task.operationId, phase, phase === 'pending' ? {} : { term });
  }

  private async callNode<T>(
    task: ChannelTask,
    nodeId: number,
    address: string,
    signal: AbortSignal,
    call: (client: NodeManagerClient, options: NodeCallOptions) => Promise<T>,
  ): Promise<T> {
    const timeoutMs = this.options.operationTimeoutMs;
    task.callingNodeId = nodeId;
    try {
      return await call(this.clients.get(address), {
        // The timeout signal backs up the deadline for clients that ignore it.
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
        deadline: Date.now() + timeoutMs,
      });
    } finally {
      task.callingNodeId = null;
    }
  }

  private taskFailed(name: string, err: unknown, taskSignal: AbortSignal, task: ChannelTask): void {
    if (this.role !== 'ACTIVE') return; // demoted or stopped: the next leader re-drives it
    if (
      err instanceof NodeLostError ||
      (taskSignal.aborted && taskSignal.reason instanceof NodeLostError)
    ) {
      // Not the channel's fault: re-plan now, without backoff.
      this.log.info('pchannel task aborted: node lost', {
        pchannel: name,
        error: errorMessage(err),
      });
      this.triggerBalance();
      return;
    }
    if (taskSignal.aborted) return; // superseded by an explicit move
    const previous = this.retries.get(name);
    const failedAttempts = (previous?.failedAttempts ?? 0) + 1;
    // Only a failed Assign counts against its node (not a failed Remove of an earlier owner).
    const failedNodeId = task.phase === 'assigning' ? task.targetNodeId : null;
    const failedAssignsOnNode =
      failedNodeId === null
        ? 0
        : failedNodeId === previous?.failedNodeId
          ? previous.failedAssignsOnNode + 1
          : 1;
    const capMs = Math.min(
      this.options.channelBackoffMaxMs,
      this.options.channelBackoffInitialMs * 2 ** Math.min(failedAttempts - 1, 30),
    );
    // Jitter in [cap/2, cap]: spreads retries of channels that failed together.
    const delayMs = Math.ceil(capMs / 2 + (Math.random() * capMs) / 2);
    this.retries.set(name, {
      failedAttempts,
      notBeforeMs: Date.now() + delayMs,
      lastError: errorMessage(err),
      failedNodeId,
      failedAssignsOnNode,
      avoidNodeId:
        failedAssignsOnNode >= ATTEMPTS_BEFORE_ANOTHER_NODE
          ? failedNodeId
          : (previous?.avoidNodeId ?? null),
    });
    this.log.warn('pchannel assignment failed; retrying', {
      pchannel: name,
      failedAttempts,
      delayMs,
      error: errorMessage(err),
    });
    const old = this.retryTimers.get(name);
    if (old !== undefined) clearTimeout(old);
    this.retryTimers.set(
      name,
      setTimeout(() => {
        this.retryTimers.delete(name);
        this.triggerBalance();
      }, delayMs),
    );
  }

  private clearRetry(name: string): void {
    this.retries.delete(name);
    const timer = this.retryTimers.get(name);
    if (timer !== undefined) clearTimeout(timer);
    this.retryTimers.delete(name);
  }

  /**
   * CAS-writes `next` over `entry` (same modRevision), fenced by our leader key. On conflict
   * re-reads the key (and our leadership) and throws: the next round re-plans from fresh data.
   */
  private async writeMeta(
    entry: MetaEntry,
    next: PChannelMeta,
    signal: AbortSignal,
  ): Promise<MetaEntry> {
    // Checked synchronously before the txn is built: a task of an earlier activation (its
    // signal aborted at demotion) must never write with a later activation's fencing token.
    signal.throwIfAborted();
    // Invariant: terms never go backwards.
    assert(next.term >= entry.meta.term, `${next.name}: term ${entry.meta.term} → ${next.term}`);
    const key = streamingKeys.pchannel(next.name);
    const result = await this.store.txn(
      [this.leaderCompare(), { key, modRevision: entry.modRevision }],
      [{ type: 'put', key, value: encodeJson(next) }],
      { signal },
    );
    if (result.succeeded) {
      const written = { meta: next, modRevision: result.revision };
      const known = this.metas.get(next.name);
      if (known === undefined || known.modRevision < written.modRevision)
        this.metas.set(next.name, written);
      return written;
    }
    const leader = await this.store.get(streamingKeys.coordinatorLeader, { signal });
    if (leader === undefined || leader.modRevision !== this.leader?.modRevision) {
      this.demote('the leader key changed under a write');
      throw new StreamingError('ON_SHUTDOWN', 'this coordinator is no longer active');
    }
    const kv = await this.store.get(key, { signal });
    if (kv !== undefined) this.applyCoordEvent({ type: 'put', kv });
    throw new StreamingError('IGNORED_OPERATION', `pchannel ${next.name} changed concurrently`);
  }

  private leaderCompare(): Compare {
    const leader = this.leader;
    if (leader === undefined)
      throw new StreamingError('ON_SHUTDOWN', 'this coordinator is not the active one');
    return { key: streamingKeys.coordinatorLeader, modRevision: leader.modRevision };
  }

  // -------------------------------------------------------------------------------------------
  // Settings

  private async updateSettings(
    mutate: (current: CoordinatorSettings) => CoordinatorSettings,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const combined =
      signal === undefined ? this.root.signal : AbortSignal.any([signal, this.root.signal]);
    for (let attempt = 0; attempt < SETTINGS_CAS_ATTEMPTS; attempt++) {
      const kv = await this.store.get(streamingKeys.settings, { signal: combined });
      const current = kv === undefined ? defaultSettings() : decodeSettings(kv.value);
      const next = mutate(current);
      const result = await this.store.txn(
        [{ key: streamingKeys.settings, modRevision: kv?.modRevision ?? 0 }],
        [{ type: 'put', key: streamingKeys.settings, value: encodeJson(next) }],
        { signal: combined },
      );
      if (result.succeeded) {
        if (result.revision > this.settingsRevision) this.applySettings(next, result.revision);
        return;
      }
    }
    throw new StreamingError('RESOURCE_EXHAUSTED', 'coord/settings kept changing; try again');
  }

  private applySettings(next: CoordinatorSettings, modRevision: number): void {
    const before = new Set(this.settings.frozenNodeIds);
    this.settings = next;
    this.settingsRevision = modRevision;
    for (const id of next.frozenNodeIds) {
      if (!before.has(id)) {
        this.log.info('node frozen', { serverId: id });
        this.abortTasksOf(id, false);
      }
    }
    this.triggerBalance();
  }

  // -------------------------------------------------------------------------------------------
  // Publishing

  /** Schedules a snapshot rebuild; a burst of changes within one macrotask makes one snapshot. */
  private publish(): void {
    if (this.publishScheduled || this.role !== 'ACTIVE') return;
    this.publishScheduled = true;
    setImmediate(() => {
      this.publishScheduled = false;
      if (this.role !== 'ACTIVE') return;
      const byNode = new Map<number, { name: string; term: number }[]>();
      for (const name of this.pchannels) {
        const { meta } = this.metaOf(name);
        if (meta.state !== 'ASSIGNED' || meta.nodeId === null || !this.nodes.has(meta.nodeId))
          continue;
        byNode.set(meta.nodeId, [...(byNode.get(meta.nodeId) ?? []), { name, term: meta.term }]);
      }
      const assignments = [...byNode]
        .sort(([a], [b]) => a - b)
        .map(([serverId, channels]) => ({
          node: { serverId, address: this.nodes.get(serverId)?.session.address ?? '' },
          channels,
        }));
      const fingerprint = JSON.stringify(assignments);
      if (fingerprint === this.snapshotFingerprint && this.snapshot !== undefined) return;
      this.snapshotFingerprint = fingerprint;
      this.localVersion++;
      this.snapshot = {
        version: { global: this.globalVersion, local: this.localVersion },
        pchannels: this.pchannels,
        assignments,
      };
      this.wake();
    });
  }

  private wake(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) waiter();
  }

  private nextChange(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(waiter);
        reject(signal.reason as Error);
      };
      const waiter = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.add(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  // -------------------------------------------------------------------------------------------
  // Helpers

  private metaOf(name: string): MetaEntry {
    return this.metas.get(name) ?? { meta: initialMeta(name), modRevision: 0 };
  }

  private isHealthy(nodeId: number): boolean {
    const node = this.nodes.get(nodeId);
    return (
      node !== undefined && !node.session.stopping && !this.settings.frozenNodeIds.includes(nodeId)
    );
  }

  private healthyNodeIds(): number[] {
    return [...this.nodes.keys()].filter((id) => this.isHealthy(id));
  }

  private async shutdown(): Promise<void> {
    this.detachSignal?.();
    const leader = this.leader;
    this.role = 'STOPPED';
    this.leader = undefined;
    this.active?.abort(new StreamingError('ON_SHUTDOWN', 'the coordinator is stopping'));
    this.root.abort(new StreamingError('ON_SHUTDOWN', 'the coordinator is stopping'));
    if (this.tickTimer !== undefined) clearInterval(this.tickTimer);
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    this.wake();
    await Promise.allSettled([...this.tasks.values()].map((t) => t.done));
    await Promise.allSettled(this.loops);
    // Revoke last, after every task stopped: the successor starts from settled metadata.
    if (leader !== undefined) {
      try {
        await leader.lease.revoke({ signal: AbortSignal.timeout(this.options.operationTimeoutMs) });
      } catch (err) {
        this.log.warn('revoking the leader lease failed; it expires on its own', {
          error: errorMessage(err),
        });
      }
    }
    if (this.ownsClients) this.clients.close();
    this.telemetry.close();
    this.log.info('coordinator stopped', { coordinatorId: this.options.coordinatorId });
  }
}

function defaultSettings(): CoordinatorSettings {
  return { allowRebalance: true, frozenNodeIds: [] };
}

function decodeSettings(bytes: Uint8Array): CoordinatorSettings {
  const raw = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<CoordinatorSettings>;
  return {
    allowRebalance: raw.allowRebalance !== false,
    frozenNodeIds: Array.isArray(raw.frozenNodeIds)
      ? raw.frozenNodeIds.filter((id) => Number.isSafeInteger(id))
      : [],
  };
}

function decodeSession(bytes: Uint8Array): NodeSession | undefined {
  try {
    const raw = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<NodeSession>;
    if (!Number.isSafeInteger(raw.serverId) || typeof raw.address !== 'string') return undefined;
    return {
      serverId: raw.serverId as number,
      address: raw.address,
      version: typeof raw.version === 'string' ? raw.version : '',
      stopping: raw.stopping === true,
      startedAtMs: typeof raw.startedAtMs === 'number' ? raw.startedAtMs : 0,
    };
  } catch {
    return undefined;
  }
}

function checkNodeId(id: number): void {
  if (!Number.isSafeInteger(id) || id < 0) {
    throw new StreamingError(
      'INVALID_ARGUMENT',
      `node id must be a non-negative integer, got ${id}`,
    );
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
