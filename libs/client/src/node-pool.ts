import { HandlerServiceClient } from '@woodstream/proto';
import { InProcessNodeClient, type NodeHandlerClient } from './in-process.js';
import type { ResolvedOptions } from './options.js';
import type { ClientStats } from './types.js';

/**
 * One client per node address, shared by every producer and consumer on that node: a gRPC
 * channel, or a direct path to a node in this process (see `inProcessNodes`).
 * Bounded by the number of node addresses the coordinator ever published to this client; a
 * long-lived client in a cluster whose nodes churn through fresh addresses keeps idle channels,
 * which grpc-js lets go idle (no connection) on their own.
 */
export class NodePool {
  private readonly clients = new Map<string, NodeHandlerClient>();
  private closed = false;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly stats: ClientStats,
  ) {}

  get(address: string): NodeHandlerClient {
    if (this.closed) throw new Error('node pool is closed'); // callers check closing first
    let client = this.clients.get(address);
    if (client === undefined) {
      const local = this.options.inProcessNodes.get(address);
      client =
        local !== undefined
          ? new InProcessNodeClient(local, () => this.stats.inProcessStreams++)
          : new HandlerServiceClient(
              address,
              this.options.credentials,
              this.options.channelOptions,
            );
      this.clients.set(address, client);
    }
    return client;
  }

  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
