import { Server } from '@grpc/grpc-js';
import { sleep } from '@woodstream/common';
import { ManagerServiceService, type HandlerServiceServer } from '@woodstream/proto';
import {
  FLOW_CONTROL_WINDOW,
  framedMethod,
  MESSAGE_BYTES,
  raiseServerFlowControlWindow,
  StreamingError,
  streamingKeys,
  SharedPortListener,
  toServiceError,
  type NodeSession,
} from '@woodstream/streaming';
import type { Lease, MetadataStore, Woodpecker } from '@woodstream/woodpecker';
import { DEDUP_DEFAULTS } from './channel-wal.js';
import { createHandlerService, HANDLER_SERVICE_DEFINITION } from './handler-service.js';
import { createManagerService } from './manager-service.js';
import { NodeTelemetry } from './node-telemetry.js';
import {
  DEFAULT_MAX_VCHANNELS_PER_PCHANNEL,
  MAX_VCHANNELS_PER_PCHANNEL,
} from './vchannel-registry.js';
import { WalManager } from './wal-manager.js';

/** Options of a streaming node. Every field has a default and a range. */
export interface StreamingNodeOptions {
  /** Interface to listen on. @default '127.0.0.1' */
  host: string;
  /** Port to listen on; 0 picks a free one. @default 0 */
  port: number;
  /** host:port other processes use to reach this node. @default `${host}:${boundPort}` */
  advertiseAddress?: string;
  /**
   * Host others use to reach the node, combined with the bound port (for port 0); ignored when
   * advertiseAddress is set. @default host
   */
  advertiseHost?: string;
  /** TTL of the node's session lease: how fast a dead node is noticed. @default 10000 (1000–300000) */
  sessionTtlMs: number;
  /** Largest message payload accepted. @default 4 MiB (1 B – 64 MiB) */
  maxMessageBytes: number;
  /** Interval of idle time ticks. @default 200 (10–10000) */
  timeTickIntervalMs: number;
  /** Unanswered produce requests per stream before the node stops reading it. @default 4096 (1–65536) */
  maxInflightPerProducer: number;
  /**
   * Payload bytes of a stream's unanswered produce requests before the node stops reading it.
   * @default 64 MiB (1 MiB – 1 GiB)
   */
  maxInflightBytesPerProducer: number;
  /**
   * Payload bytes of unanswered produce requests over all of the node's streams before the node
   * stops reading streams that send more: the bound the per-stream limits do not give when many
   * producers connect. @default 512 MiB (1 MiB – 64 GiB)
   */
  maxInflightBytesPerNode: number;
  /**
   * Produce and consume streams open at once; a new one past it is refused with
   * RESOURCE_EXHAUSTED (clients retry). @default 2048 (1 – 65536)
   */
  maxStreamsPerNode: number;
  /** On stop: how long to wait for the coordinator to move the channels away. @default 30000 (0–600000) */
  drainTimeoutMs: number;
  /**
   * Vchannels one pchannel may carry; a produce to one more fails with INVALID_ARGUMENT.
   * @default 1024 (1–65536)
   */
  maxVChannelsPerPChannel: number;
  /**
   * HTTP/2 receive window per stream and per connection: how much a producer may have in
   * flight before the node reads it (see FLOW_CONTROL_WINDOW). @default 4 MiB (64 KiB – 64 MiB)
   */
  flowControlWindowBytes: number;
  /**
   * Recent messages per pchannel whose re-sends by their producer are answered with the stored
   * result instead of being stored twice (0: off). @default 8192 (0 – 1048576)
   */
  dedupWindowEntries: number;
  /**
   * On taking a pchannel over: about how many bytes of its log tail are read to rebuild that
   * memory (at most dedupWindowEntries entries too). @default 64 MiB (0 – 1 GiB)
   */
  dedupRecoveryBytes: number;
  /** Version published in the session. */
  version: string;
}

const RANGES: Partial<Record<keyof StreamingNodeOptions, [number, number]>> = {
  port: [0, 65535],
  sessionTtlMs: [1000, 300_000],
  maxMessageBytes: [1, MESSAGE_BYTES.max],
  timeTickIntervalMs: [10, 10_000],
  maxInflightPerProducer: [1, 65_536],
  maxInflightBytesPerProducer: [1024 * 1024, 1024 * 1024 * 1024],
  maxInflightBytesPerNode: [1024 * 1024, 64 * 1024 * 1024 * 1024],
  maxStreamsPerNode: [1, 65_536],
  drainTimeoutMs: [0, 600_000],
  maxVChannelsPerPChannel: [1, MAX_VCHANNELS_PER_PCHANNEL],
  flowControlWindowBytes: [FLOW_CONTROL_WINDOW.min, FLOW_CONTROL_WINDOW.max],
  dedupWindowEntries: [0, 1_048_576],
  dedupRecoveryBytes: [0, 1024 * 1024 * 1024],
};

export function nodeOptionsWithDefaults(
  partial: Partial<StreamingNodeOptions> = {},
): StreamingNodeOptions {
  const options: StreamingNodeOptions = {
    host: '127.0.0.1',
    port: 0,
    sessionTtlMs: 10_000,
    maxMessageBytes: MESSAGE_BYTES.default,
    timeTickIntervalMs: 200,
    maxInflightPerProducer: 4096,
    maxInflightBytesPerProducer: 64 * 1024 * 1024,
    maxInflightBytesPerNode: 512 * 1024 * 1024,
    maxStreamsPerNode: 2048,
    drainTimeoutMs: 30_000,
    maxVChannelsPerPChannel: DEFAULT_MAX_VCHANNELS_PER_PCHANNEL,
    flowControlWindowBytes: FLOW_CONTROL_WINDOW.default,
    dedupWindowEntries: DEDUP_DEFAULTS.windowEntries,
    dedupRecoveryBytes: DEDUP_DEFAULTS.recoveryBytes,
    version: '0.1.0',
    ...Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)),
  };
  const problems: string[] = [];
  for (const [key, [min, max]] of Object.entries(RANGES) as [
    keyof StreamingNodeOptions,
    [number, number],
  ][]) {
    const v = options[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      problems.push(`${key} must be an integer in [${min}, ${max}]`);
  }
  if (problems.length > 0)
    throw new StreamingError('INVALID_ARGUMENT', `invalid node options: ${problems.join('; ')}`);
  return options;
}

/** Structured logging seam; a pino logger fits. */
export interface NodeLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}
const silent: NodeLogger = { info: () => {}, warn: () => {} };

/**
 * A streaming node process: gRPC server (HandlerService, ManagerService), the WALs of its
 * channels, and a lease-bound session key through which the coordinator discovers it.
 */
export class StreamingNode {
  private lease: Lease | undefined;
  /** Invariant: true from the moment the session lease is lost until a new session is written. */
  private isSessionLost = false;
  private isStopping = false;
  private readonly abort = new AbortController();
  /** Its observable callbacks run until stop() detaches them. */
  private telemetry: NodeTelemetry | undefined;

  private constructor(
    readonly serverId: number,
    readonly address: string,
    readonly manager: WalManager,
    /**
     * The HandlerService implementation the gRPC server serves; a client in the same process
     * (standalone) may call it directly, with the same semantics and none of the encoding.
     */
    readonly handlers: HandlerServiceServer,
    private readonly server: Server,
    private readonly listener: SharedPortListener,
    private readonly metadata: MetadataStore,
    private readonly options: StreamingNodeOptions,
    private readonly log: NodeLogger,
  ) {}

  static async start(
    partial: Partial<StreamingNodeOptions>,
    deps: { wal: Woodpecker; metadata: MetadataStore; logger?: NodeLogger },
    signal?: AbortSignal,
  ): Promise<StreamingNode> {
    const options = nodeOptionsWithDefaults(partial);
    const log = deps.logger ?? silent;
    const serverId = await allocateServerId(deps.metadata, signal);
    // Filled once the server is bound; callbacks below only run after that.
    const ref: { node?: StreamingNode; telemetry?: NodeTelemetry } = {};
    const manager = new WalManager(
      deps.wal,
      deps.metadata,
      {
        maxMessageBytes: options.maxMessageBytes,
        timeTickIntervalMs: options.timeTickIntervalMs,
        maxVChannelsPerPChannel: options.maxVChannelsPerPChannel,
        dedupWindowEntries: options.dedupWindowEntries,
        dedupRecoveryBytes: options.dedupRecoveryBytes,
        onDeduplicated: (pchannel) => {
          if (ref.telemetry !== undefined) ref.telemetry.channel(pchannel).deduplicated++;
        },
      },
      () =>
        ref.node?.log.info('channels changed', {
          channels: ref.node.manager.openChannels().map((w) => `${w.name}@${w.term}`),
        }),
      {
        info: (msg, fields) => log.info(msg, { serverId, ...fields }),
        warn: (msg, fields) => log.warn(msg, { serverId, ...fields }),
      },
    );
    const telemetry = new NodeTelemetry(manager);
    ref.telemetry = telemetry;
    const server = new Server({
      // The largest any node accepts, not this node's limit: a message above `maxMessageBytes`
      // gets its own INVALID_ARGUMENT instead of gRPC ending the stream (and every append on it).
      'grpc.max_receive_message_length': MESSAGE_BYTES.max + MESSAGE_BYTES.frameOverhead,
      'grpc.max_send_message_length': MESSAGE_BYTES.max + MESSAGE_BYTES.frameOverhead,
    });
    const flowControl = raiseServerFlowControlWindow(server, options.flowControlWindowBytes);
    if (!flowControl.applied)
      log.warn('this grpc-js cannot raise the HTTP/2 receive window; large messages are slower');
    const stopping = (): boolean => ref.node?.isStopping ?? false;
    const handlers = createHandlerService(
      manager,
      serverId,
      {
        maxInflightPerProducer: options.maxInflightPerProducer,
        maxInflightBytesPerProducer: options.maxInflightBytesPerProducer,
        maxInflightBytesPerNode: options.maxInflightBytesPerNode,
        maxStreamsPerNode: options.maxStreamsPerNode,
      },
      telemetry,
    );
    server.addService(HANDLER_SERVICE_DEFINITION, handlers);
    server.addService(ManagerServiceService, createManagerService(manager, stopping, telemetry));
    // One port for gRPC and the framed produce stream.
    const listener = new SharedPortListener(
      server,
      {
        methods: new Map([
          framedMethod(HANDLER_SERVICE_DEFINITION.produce, (call) =>
            handlers.produce(call as unknown as Parameters<typeof handlers.produce>[0]),
          ),
        ]),
        maxBodyBytes: MESSAGE_BYTES.max + MESSAGE_BYTES.frameOverhead,
        openTimeoutMs: 10_000,
        protocolError: (message) => toServiceError(new StreamingError('INVALID_ARGUMENT', message)),
      },
      // Above the stream limit, so that a client past it gets the handler's typed refusal.
      options.maxStreamsPerNode + 64,
    );
    const port = await listener.listen(options.host, options.port);
    flowControl.applyToListeners();
    const address = options.advertiseAddress ?? `${options.advertiseHost ?? options.host}:${port}`;
    const node = new StreamingNode(
      serverId,
      address,
      manager,
      handlers,
      server,
      listener,
      deps.metadata,
      options,
      log,
    );
    node.telemetry = telemetry;
    ref.node = node;
    try {
      await node.register(signal);
    } catch (err) {
      listener.close();
      server.forceShutdown();
      telemetry.close();
      throw err;
    }
    node.keepRegistered();
    log.info('streaming node started', { serverId, address });
    return node;
  }

  private session(): NodeSession {
    return {
      serverId: this.serverId,
      address: this.address,
      version: this.options.version,
      stopping: this.isStopping,
      startedAtMs: Date.now(),
    };
  }

  private async register(signal?: AbortSignal): Promise<void> {
    this.lease = await this.metadata.grantLease(this.options.sessionTtlMs, { signal });
    await this.putSession(signal);
  }

  private async putSession(signal?: AbortSignal): Promise<void> {
    const lease = this.lease;
    if (lease === undefined) return;
    await this.metadata.txn(
      [],
      [
        {
          type: 'put',
          key: streamingKeys.nodeSession(this.serverId),
          value: new TextEncoder().encode(JSON.stringify(this.session())),
          leaseId: lease.id,
        },
      ],
      { signal },
    );
  }

  /** If the lease is lost (etcd unreachable longer than the TTL), register again once possible. */
  private keepRegistered(): void {
    void (async () => {
      while (!this.abort.signal.aborted) {
        const lease = this.lease;
        if (lease === undefined) return;
        const reason = await lease.lost;
        if (this.abort.signal.aborted) return;
        this.isSessionLost = true;
        this.log.warn('session lease lost; closing its channels and registering again', {
          reason: reason.message,
        });
        // Without a session the coordinator counts this node as gone and places its channels
        // elsewhere with new terms, skipping Remove here. Close them now: an idle WAL would not
        // learn of the fence, and its consumers would wait on time ticks with no messages.
        void this.manager.closeAll().then((closed) => {
          if (closed > 0) this.log.info('channels closed after the session was lost', { closed });
        });
        for (let delay = 100; !this.abort.signal.aborted; delay = Math.min(delay * 2, 5_000)) {
          try {
            await this.register(this.abort.signal);
            this.isSessionLost = false;
            break;
          } catch {
            await sleep(delay, this.abort.signal).catch(() => undefined);
          }
        }
      }
    })();
  }

  /**
   * What readiness depends on: the session is registered (lease alive), the node is not
   * stopping, and every channel the coordinator asked it to open is open.
   */
  readiness(): { isRegistered: boolean; isStopping: boolean; opening: string[] } {
    return {
      isRegistered: this.lease !== undefined && !this.isSessionLost,
      isStopping: this.isStopping,
      opening: this.manager.pendingOpens(),
    };
  }

  /**
   * Graceful stop: marks the session `stopping` so the coordinator moves the channels away,
   * waits for that (up to drainTimeoutMs), then closes the remaining WALs, the session and the server.
   */
  async stop(options: { drain?: boolean } = {}): Promise<void> {
    if (this.isStopping && this.abort.signal.aborted) return;
    this.isStopping = true;
    const drain = options.drain ?? true;
    if (drain && this.options.drainTimeoutMs > 0) {
      await this.putSession().catch(() => undefined);
      const deadline = Date.now() + this.options.drainTimeoutMs;
      while (this.manager.openChannels().length > 0 && Date.now() < deadline) await sleep(50);
    }
    this.abort.abort(new StreamingError('ON_SHUTDOWN', 'node stopping'));
    await this.manager.stop();
    await this.lease?.revoke().catch(() => undefined);
    this.listener.close();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    this.telemetry?.close();
    this.log.info('streaming node stopped', { serverId: this.serverId });
  }
}

async function allocateServerId(metadata: MetadataStore, signal?: AbortSignal): Promise<number> {
  for (let attempt = 0; attempt < 64; attempt++) {
    const kv = await metadata.get(streamingKeys.serverIdGen, { signal });
    const next = kv === undefined ? 1 : Number(new TextDecoder().decode(kv.value));
    const result = await metadata.txn(
      [{ key: streamingKeys.serverIdGen, modRevision: kv?.modRevision ?? 0 }],
      [
        {
          type: 'put',
          key: streamingKeys.serverIdGen,
          value: new TextEncoder().encode(String(next + 1)),
        },
      ],
      { signal },
    );
    if (result.succeeded) return next;
  }
  throw new StreamingError('INNER', 'could not allocate a server id: too much contention');
}
