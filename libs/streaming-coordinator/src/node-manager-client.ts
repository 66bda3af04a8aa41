import {
  credentials as grpcCredentials,
  Metadata,
  type ChannelCredentials,
  type ClientOptions,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { AccessMode, ManagerServiceClient, type CollectStatusResponse } from '@woodstream/proto';
import { fromServiceError, StreamingError } from '@woodstream/streaming';

/** Options of every call to a node: cancelled by `signal`, failed with ON_SHUTDOWN at `deadline`. */
export interface NodeCallOptions {
  signal: AbortSignal;
  /** Absolute deadline (epoch ms or Date). */
  deadline: number | Date;
}

/** What a node reports about itself. */
export interface NodeStatus {
  stopping: boolean;
  channels: { name: string; term: number }[];
}

/**
 * The coordinator's view of one node's ManagerService. Every method rejects with a
 * StreamingError: the node's own code when it sent one, ON_SHUTDOWN when the node is
 * unreachable or the deadline passed, `signal.reason` when aborted.
 */
export interface NodeManagerClient {
  /** Opens `pchannel` at `term` on the node; resolves once it accepts writes. */
  assign(pchannel: string, term: number, options: NodeCallOptions): Promise<void>;
  /** Closes `pchannel` for `term` (and older terms) on the node. */
  remove(pchannel: string, term: number, options: NodeCallOptions): Promise<void>;
  collectStatus(options: NodeCallOptions): Promise<NodeStatus>;
}

/** Hands out one client per node address. The coordinator never closes an injected factory. */
export interface NodeManagerClientFactory {
  get(address: string): NodeManagerClient;
  /** Closes every client; later `get` calls throw. */
  close(): void;
}

/** Options of {@link GrpcNodeManagerClientFactory}. */
export interface GrpcNodeManagerClientFactoryOptions {
  /** @default insecure (cluster-internal traffic) */
  credentials?: ChannelCredentials;
  channelOptions?: Partial<ClientOptions>;
  /** Cached clients; the least recently used is closed beyond this. @default 1024 (min 1, max 65536) */
  maxClients?: number;
}

/**
 * {@link NodeManagerClientFactory} over grpc-js: one `ManagerServiceClient` per address, kept
 * in an LRU of at most `maxClients` (nodes come and go; their channels must not pile up).
 */
export class GrpcNodeManagerClientFactory implements NodeManagerClientFactory {
  private readonly clients = new Map<string, ManagerServiceClient>();
  private readonly credentials: ChannelCredentials;
  private readonly maxClients: number;
  private closed = false;

  constructor(private readonly options: GrpcNodeManagerClientFactoryOptions = {}) {
    this.credentials = options.credentials ?? grpcCredentials.createInsecure();
    const max = options.maxClients ?? 1024;
    if (!Number.isInteger(max) || max < 1 || max > 65_536) {
      throw new StreamingError('INVALID_ARGUMENT', `maxClients must be in [1, 65536], got ${max}`);
    }
    this.maxClients = max;
  }

  get(address: string): NodeManagerClient {
    if (this.closed) throw new StreamingError('ON_SHUTDOWN', 'the node client factory is closed');
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new ManagerServiceClient(address, this.credentials, this.options.channelOptions);
      if (this.clients.size >= this.maxClients) {
        const [oldest] = this.clients;
        if (oldest !== undefined) {
          this.clients.delete(oldest[0]);
          oldest[1].close();
        }
      }
    } else {
      this.clients.delete(address); // re-insert below: Map order is the LRU order
    }
    this.clients.set(address, client);
    return new GrpcNodeManagerClient(client);
  }

  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

class GrpcNodeManagerClient implements NodeManagerClient {
  constructor(private readonly client: ManagerServiceClient) {}

  async assign(pchannel: string, term: number, options: NodeCallOptions): Promise<void> {
    const request = {
      pchannel: {
        name: pchannel,
        term: BigInt(term),
        accessMode: AccessMode.ACCESS_MODE_READ_WRITE,
      },
    };
    await unary(options, (metadata, callOptions, done) =>
      this.client.assign(request, metadata, callOptions, done),
    );
  }

  async remove(pchannel: string, term: number, options: NodeCallOptions): Promise<void> {
    const request = {
      pchannel: {
        name: pchannel,
        term: BigInt(term),
        accessMode: AccessMode.ACCESS_MODE_READ_WRITE,
      },
    };
    await unary(options, (metadata, callOptions, done) =>
      this.client.remove(request, metadata, callOptions, done),
    );
  }

  async collectStatus(options: NodeCallOptions): Promise<NodeStatus> {
    const response = await unary<CollectStatusResponse>(options, (metadata, callOptions, done) =>
      this.client.collectStatus({}, metadata, callOptions, done),
    );
    return {
      stopping: response.stopping,
      channels: response.channels.map((c) => ({
        name: c.pchannel?.name ?? '',
        term: Number(c.pchannel?.term ?? 0n),
      })),
    };
  }
}

type Start<T> = (
  metadata: Metadata,
  callOptions: { deadline: Date },
  done: (err: ServiceError | null, response: T) => void,
) => ClientUnaryCall;

/** Runs one unary call with a deadline, cancelling it when `signal` aborts. */
function unary<T>(options: NodeCallOptions, start: Start<T>): Promise<T> {
  const { signal } = options;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      call.cancel();
      reject(signal.reason as Error);
    };
    const call = start(
      new Metadata(),
      {
        deadline: options.deadline instanceof Date ? options.deadline : new Date(options.deadline),
      },
      (err, response) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) return; // already rejected with the abort reason
        if (err) reject(fromServiceError(err));
        else resolve(response);
      },
    );
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
