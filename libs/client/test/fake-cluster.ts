// Test doubles of the coordinator's AssignmentService and the node's HandlerService, speaking the
// real protocol over real gRPC on loopback. They keep one in-memory log per pchannel (shared by
// all nodes, like the shared storage behind real nodes) and let a test move a pchannel, hold or
// drop results, and break streams. They double the servers, not the SDK.
import {
  Server,
  ServerCredentials,
  status as GrpcStatus,
  type ServerDuplexStream,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  AccessMode,
  AssignmentServiceService,
  HandlerServiceService,
  MessageType,
  type AssignmentDiscoverRequest,
  type AssignmentDiscoverResponse,
  type ConsumeRequest,
  type ConsumeResponse,
  type DeliverFilter,
  type DeliverPolicy,
  type FullAssignment,
  type MessageID,
  type OpenConsumer,
  type PChannelInfo,
  type ProduceMessage,
  type ProduceRequest,
  type ProduceResponse,
  type ReportAssignmentError,
} from '@woodstream/proto';
import {
  framedMethod,
  SharedPortListener,
  StreamingError,
  toServiceError,
} from '@woodstream/streaming';

export interface LogEntry {
  readonly id: MessageID;
  readonly vchannel: string;
  readonly payload: Buffer;
  readonly properties: Record<string, string>;
  readonly timeTick: bigint;
  readonly lastConfirmedId: MessageID;
  /** `<producer id>:<sequence>` when the producer identified itself (the fake does not dedup). */
  readonly origin: string | undefined;
}

/** One pchannel's log: segment = owner generation, entries dense per segment. */
export class FakeLog {
  readonly entries: LogEntry[] = [];
  private segmentId = 0;
  private entryId = 0;
  private tick = 1000n;
  private readonly listeners = new Set<() => void>();

  get lastTick(): bigint {
    return this.tick;
  }

  /** A new writer (after a move) starts a new segment, as a fenced WAL does. */
  newSegment(): void {
    if (this.entryId === 0) return;
    this.segmentId++;
    this.entryId = 0;
  }

  append(
    vchannel: string,
    payload: Buffer,
    properties: Record<string, string>,
    origin?: string,
  ): LogEntry {
    const id = { segmentId: this.segmentId, entryId: this.entryId++ };
    this.tick++;
    // Confirmed position lags two entries behind, so a resumed reader really re-reads a few
    // entries and has to rely on the time-tick filter to skip them.
    const confirmed = this.entries[Math.max(0, this.entries.length - 2)]?.id ?? id;
    const entry = {
      id,
      vchannel,
      payload,
      properties,
      timeTick: this.tick,
      lastConfirmedId: confirmed,
      origin,
    };
    this.entries.push(entry);
    for (const l of [...this.listeners]) l();
    return entry;
  }

  /** Resolves on the next append or when `signal` aborts. */
  changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.listeners.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.listeners.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Payloads (utf8) of a vchannel, in log order. */
  payloads(vchannel?: string): string[] {
    return this.entries
      .filter((e) => vchannel === undefined || e.vchannel === vchannel)
      .map((e) => e.payload.toString('utf8'));
  }
}

function compareIds(a: MessageID, b: MessageID): number {
  if (a.segmentId !== b.segmentId) return a.segmentId < b.segmentId ? -1 : 1;
  if (a.entryId !== b.entryId) return a.entryId < b.entryId ? -1 : 1;
  return 0;
}

function startIndex(log: FakeLog, policy: DeliverPolicy | undefined): number {
  const p = policy?.policy;
  switch (p?.$case) {
    case undefined:
    case 'all':
      return 0;
    case 'latest':
      return log.entries.length;
    case 'startFrom': {
      const i = log.entries.findIndex((e) => compareIds(e.id, p.startFrom) >= 0);
      return i < 0 ? log.entries.length : i;
    }
    case 'startAfter': {
      const i = log.entries.findIndex((e) => compareIds(e.id, p.startAfter) > 0);
      return i < 0 ? log.entries.length : i;
    }
  }
}

function matches(entry: LogEntry, filters: DeliverFilter[]): boolean {
  return filters.every((f) => {
    const filter = f.filter;
    switch (filter?.$case) {
      case undefined:
        return true;
      case 'timeTickGt':
        return entry.timeTick > filter.timeTickGt;
      case 'timeTickGte':
        return entry.timeTick >= filter.timeTickGte;
      case 'messageTypes':
        return filter.messageTypes.types.includes(MessageType.MESSAGE_TYPE_DATA);
    }
  });
}

async function listen(server: Server): Promise<string> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return `127.0.0.1:${port}`;
}

function fail(call: ServerDuplexStream<unknown, unknown>, err: StreamingError): void {
  call.emit('error', toServiceError(err));
}

type ProduceCall = ServerDuplexStream<ProduceRequest, ProduceResponse>;
type ConsumeCall = ServerDuplexStream<ConsumeRequest, ConsumeResponse>;

/** What a test hook may make a node do with one produce request. */
export type ProduceHookResult =
  /** Append it and never send its result. */
  | 'drop'
  /** Append it and keep its result until releaseHeldResults() (lost if the stream ends). */
  | 'hold'
  /** Do not append it; answer with this error. */
  | StreamingError
  | undefined;

export interface ConsumerStreamState {
  readonly pchannel: string;
  readonly open: OpenConsumer;
  written: number;
  isBlocked: boolean;
  readonly call: ConsumeCall;
}

/** A fake streaming node: serves Produce/Consume for the pchannels it owns, at their term. */
export class FakeNode {
  readonly server = new Server();
  address = '';
  /** pchannel → term this node serves. */
  readonly owned = new Map<string, bigint>();
  readonly producers = new Set<{ pchannel: string; call: ProduceCall }>();
  readonly consumers = new Set<ConsumerStreamState>();
  produceHook: ((m: ProduceMessage) => ProduceHookResult) | undefined;
  /** When set, every open fails with this error. */
  openError: StreamingError | undefined;
  openAttempts = 0;
  /** When set, a producer stream stops reading right after its open, until resumeProducers(). */
  pauseProducersAfterOpen = false;
  private readonly pausedProducers: ProduceCall[] = [];
  closeRequests = 0;
  private readonly held: { call: ProduceCall; res: ProduceResponse }[] = [];

  private listener: SharedPortListener | undefined;

  constructor(
    readonly serverId: bigint,
    private readonly logs: Map<string, FakeLog>,
    /** Serves produce over the framed stream too, on the same port, as a real node does. */
    private readonly framed = true,
  ) {
    this.server.addService(HandlerServiceService, {
      produce: (call: ProduceCall) => this.produce(call),
      consume: (call: ConsumeCall) => this.consume(call),
    });
  }

  async start(): Promise<void> {
    if (!this.framed) {
      this.address = await listen(this.server);
      return;
    }
    this.listener = new SharedPortListener(this.server, {
      methods: new Map([
        framedMethod(HandlerServiceService.produce, (call) =>
          this.produce(call as unknown as ProduceCall),
        ),
      ]),
      maxBodyBytes: 16 * 1024 * 1024,
      openTimeoutMs: 10_000,
      protocolError: (message) => toServiceError(new StreamingError('INVALID_ARGUMENT', message)),
    });
    this.address = `127.0.0.1:${await this.listener.listen('127.0.0.1', 0)}`;
  }

  stop(): void {
    this.listener?.close();
    this.server.forceShutdown();
  }

  resumeProducers(): void {
    this.pauseProducersAfterOpen = false;
    for (const call of this.pausedProducers.splice(0)) call.resume();
  }

  releaseHeldResults(): void {
    for (const { call, res } of this.held.splice(0)) if (!call.writableEnded) call.write(res);
  }

  /** Stops serving `pchannel`: every stream on it ends with `closed {error}`. */
  remove(
    pchannel: string,
    error = new StreamingError('CHANNEL_FENCED', 'the channel moved'),
  ): void {
    this.owned.delete(pchannel);
    for (const p of [...this.producers]) {
      if (p.pchannel !== pchannel) continue;
      this.producers.delete(p);
      p.call.write({ response: { $case: 'closed', closed: { error: error.toProto() } } });
      p.call.end();
    }
    for (const c of [...this.consumers]) {
      if (c.pchannel !== pchannel) continue;
      this.consumers.delete(c);
      c.call.write({ response: { $case: 'closed', closed: { error: error.toProto() } } });
      c.call.end();
    }
  }

  /** Sends a time-tick event to every consumer of `pchannel`, as an idle tick of this node's clock. */
  sendTimeTick(pchannel: string, timeTick: bigint): void {
    for (const c of this.consumers) {
      if (c.pchannel === pchannel)
        c.call.write({ response: { $case: 'timeTick', timeTick: { timeTick } } });
    }
  }

  /** Breaks every consumer stream of `pchannel` with a bare transport-like error. */
  breakConsumers(pchannel: string): void {
    for (const c of [...this.consumers]) {
      if (c.pchannel !== pchannel) continue;
      this.consumers.delete(c);
      const err: Partial<ServiceError> = {
        code: GrpcStatus.UNAVAILABLE,
        details: 'broken on purpose',
      };
      c.call.emit('error', err);
    }
  }

  private checkOwner(info: PChannelInfo | undefined): StreamingError | undefined {
    this.openAttempts++;
    if (this.openError !== undefined) return this.openError;
    const term = info === undefined ? undefined : this.owned.get(info.name);
    if (info === undefined || term === undefined) {
      return new StreamingError(
        'CHANNEL_NOT_EXIST',
        `node ${this.serverId} does not own ${info?.name}`,
      );
    }
    if (term !== info.term) {
      return new StreamingError('UNMATCHED_CHANNEL_TERM', `term ${info.term}, node holds ${term}`);
    }
    return undefined;
  }

  private produce(call: ProduceCall): void {
    let entry: { pchannel: string; call: ProduceCall } | undefined;
    let producerId = 0n;
    call.on('error', () => undefined);
    const produceOne = (m: ProduceMessage): void => {
      if (entry === undefined || !this.producers.has(entry)) return;
      const hook = this.produceHook?.(m);
      if (hook instanceof StreamingError) {
        call.write({
          response: {
            $case: 'result',
            result: {
              requestId: m.requestId,
              outcome: { $case: 'error', error: hook.toProto() },
            },
          },
        });
        return;
      }
      const log = this.logs.get(entry.pchannel) as FakeLog;
      const e = log.append(
        m.vchannel,
        m.message?.payload ?? Buffer.alloc(0),
        m.message?.properties ?? {},
        producerId !== 0n && m.sequence > 0 ? `${producerId}:${m.sequence}` : undefined,
      );
      const res: ProduceResponse = {
        response: {
          $case: 'result',
          result: {
            requestId: m.requestId,
            outcome: {
              $case: 'success',
              success: { id: e.id, timeTick: e.timeTick, lastConfirmedId: e.lastConfirmedId },
            },
          },
        },
      };
      if (hook === 'drop') return;
      if (hook === 'hold') this.held.push({ call, res });
      else call.write(res);
    };
    call.on('data', (req: ProduceRequest) => {
      const r = req.request;
      switch (r?.$case) {
        case undefined:
          return;
        case 'open': {
          const err = this.checkOwner(r.open.pchannel);
          if (err) return fail(call, err);
          entry = { pchannel: r.open.pchannel?.name ?? '', call };
          producerId = r.open.producerId;
          this.producers.add(entry);
          call.write({ response: { $case: 'opened', opened: { serverId: this.serverId } } });
          if (this.pauseProducersAfterOpen) {
            call.pause();
            this.pausedProducers.push(call);
          }
          return;
        }
        case 'produce':
          produceOne(r.produce);
          return;
        // The fake answers a batch with one result frame per message (the client accepts both).
        case 'produceBatch':
          for (const m of r.produceBatch.messages) produceOne(m);
          return;
        case 'close':
          this.closeRequests++;
          if (entry) this.producers.delete(entry);
          call.write({ response: { $case: 'closed', closed: { error: undefined } } });
          call.end();
          return;
      }
    });
    call.on('end', () => {
      if (entry) this.producers.delete(entry);
      if (!call.writableEnded) call.end();
    });
  }

  private consume(call: ConsumeCall): void {
    const stop = new AbortController();
    let state: ConsumerStreamState | undefined;
    call.on('error', () => stop.abort());
    call.on('cancelled', () => stop.abort());
    call.on('data', (req: ConsumeRequest) => {
      const r = req.request;
      if (r?.$case === 'open') {
        const err = this.checkOwner(r.open.pchannel);
        if (err) return fail(call, err);
        state = {
          pchannel: r.open.pchannel?.name ?? '',
          open: r.open,
          written: 0,
          isBlocked: false,
          call,
        };
        this.consumers.add(state);
        call.write({
          response: { $case: 'opened', opened: { serverId: this.serverId, startId: undefined } },
        });
        void this.deliver(state, stop.signal);
      } else if (r?.$case === 'close') {
        this.closeRequests++;
        stop.abort();
        if (state) this.consumers.delete(state);
        call.write({ response: { $case: 'closed', closed: { error: undefined } } });
        call.end();
      }
    });
    call.on('end', () => {
      stop.abort();
      if (state) this.consumers.delete(state);
    });
    call.on('close', () => {
      stop.abort();
      if (state) this.consumers.delete(state);
    });
  }

  /** Catch-up then tail, honouring write backpressure (the point of the flow-control test). */
  private async deliver(state: ConsumerStreamState, signal: AbortSignal): Promise<void> {
    const log = this.logs.get(state.pchannel) as FakeLog;
    let i = startIndex(log, state.open.deliverPolicy);
    let sentTick = 0n;
    const { call } = state;
    const live = () => !signal.aborted && this.consumers.has(state) && !call.writableEnded;
    while (live()) {
      while (i < log.entries.length && live()) {
        const e = log.entries[i++] as LogEntry;
        if (e.vchannel !== state.open.vchannel || !matches(e, state.open.deliverFilters)) continue;
        const ok = call.write({
          response: {
            $case: 'message',
            message: { ...e, type: MessageType.MESSAGE_TYPE_DATA },
          },
        });
        state.written++;
        if (!ok) {
          state.isBlocked = true;
          await new Promise<void>((resolve) => {
            const done = () => {
              call.off('drain', done);
              signal.removeEventListener('abort', done);
              resolve();
            };
            call.on('drain', done);
            signal.addEventListener('abort', done, { once: true });
          });
          state.isBlocked = false;
        }
      }
      if (!live()) return;
      // Caught up: everything up to the log's last tick has been delivered.
      if (log.lastTick !== sentTick) {
        sentTick = log.lastTick;
        call.write({ response: { $case: 'timeTick', timeTick: { timeTick: sentTick } } });
      }
      await log.changed(signal);
    }
  }
}

/** A fake coordinator: pushes assignment snapshots, records reports and close requests. */
export class FakeCoordinator {
  readonly server = new Server();
  address = '';
  readonly streams = new Set<
    ServerDuplexStream<AssignmentDiscoverRequest, AssignmentDiscoverResponse>
  >();
  readonly reports: ReportAssignmentError[] = [];
  closeRequests = 0;
  /** While true, connecting clients get no snapshot. */
  isWithholding = false;
  private version = { global: 1n, local: 1n };
  readonly owners = new Map<string, { node: FakeNode; term: bigint }>();

  constructor(readonly pchannels: readonly string[]) {
    this.server.addService(AssignmentServiceService, {
      assignmentDiscover: (
        call: ServerDuplexStream<AssignmentDiscoverRequest, AssignmentDiscoverResponse>,
      ) => {
        this.streams.add(call);
        call.on('error', () => undefined);
        call.on('data', (req: AssignmentDiscoverRequest) => {
          const c = req.command;
          if (c?.$case === 'reportError') this.reports.push(c.reportError);
          else if (c?.$case === 'close') {
            this.closeRequests++;
            call.write({ response: { $case: 'close', close: {} } });
            call.end();
            this.streams.delete(call);
          }
        });
        call.on('end', () => this.streams.delete(call));
        call.on('cancelled', () => this.streams.delete(call));
        if (!this.isWithholding) call.write(this.snapshot());
      },
    });
  }

  async start(): Promise<void> {
    this.address = await listen(this.server);
  }

  stop(): void {
    this.server.forceShutdown();
  }

  /** Ends every discovery stream with UNAVAILABLE, as a coordinator restart would. */
  dropStreams(): void {
    for (const s of [...this.streams]) {
      this.streams.delete(s);
      const err: Partial<ServiceError> = { code: GrpcStatus.UNAVAILABLE, details: 'restarting' };
      s.emit('error', err);
    }
  }

  snapshot(): AssignmentDiscoverResponse {
    const byNode = new Map<FakeNode, PChannelInfo[]>();
    for (const [name, { node, term }] of this.owners) {
      const list = byNode.get(node) ?? [];
      list.push({ name, term, accessMode: AccessMode.ACCESS_MODE_READ_WRITE });
      byNode.set(node, list);
    }
    const full: FullAssignment = {
      version: { ...this.version },
      assignments: [...byNode].map(([node, channels]) => ({
        node: { serverId: node.serverId, address: node.address },
        channels,
      })),
      pchannelCount: this.pchannels.length,
      pchannels: [...this.pchannels],
    };
    return { response: { $case: 'fullAssignment', fullAssignment: full } };
  }

  /** Publishes the current assignment to every connected client. */
  publish(): void {
    this.version = { global: this.version.global, local: this.version.local + 1n };
    const snap = this.snapshot();
    for (const s of this.streams) s.write(snap);
  }
}

/** A coordinator, nodes and the shared logs, wired like a small cluster. */
export class FakeCluster {
  readonly logs = new Map<string, FakeLog>();
  readonly coordinator: FakeCoordinator;
  readonly nodes: FakeNode[] = [];

  constructor(readonly pchannels: readonly string[]) {
    for (const p of pchannels) this.logs.set(p, new FakeLog());
    this.coordinator = new FakeCoordinator(pchannels);
  }

  static async start(options: {
    pchannels: string[];
    nodes: number;
    /** Nodes serve produce over the framed stream too. @default true */
    framed?: boolean;
  }): Promise<FakeCluster> {
    const cluster = new FakeCluster(options.pchannels);
    try {
      await cluster.coordinator.start();
      for (let i = 0; i < options.nodes; i++) {
        const node = new FakeNode(BigInt(i + 1), cluster.logs, options.framed ?? true);
        cluster.nodes.push(node);
        await node.start();
      }
      // pchannels go to node 0 at term 1.
      for (const p of options.pchannels) cluster.assign(p, cluster.node(0), false);
    } catch (err) {
      cluster.stop();
      throw err;
    }
    return cluster;
  }

  node(i: number): FakeNode {
    return this.nodes[i] as FakeNode;
  }

  log(pchannel: string): FakeLog {
    return this.logs.get(pchannel) as FakeLog;
  }

  /**
   * Assigns `pchannel` to `node` at the next term, the coordinator's way: remove, assign,
   * publish. `tellOldOwner: false` skips the remove, as for an old owner without a session.
   */
  assign(pchannel: string, node: FakeNode, publish = true, tellOldOwner = true): bigint {
    const previous = this.coordinator.owners.get(pchannel);
    const term = (previous?.term ?? 0n) + 1n;
    if (tellOldOwner) previous?.node.remove(pchannel);
    this.log(pchannel).newSegment();
    node.owned.set(pchannel, term);
    this.coordinator.owners.set(pchannel, { node, term });
    if (publish) this.coordinator.publish();
    return term;
  }

  stop(): void {
    this.coordinator.stop();
    for (const n of this.nodes) n.stop();
  }
}
