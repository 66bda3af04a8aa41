import { HandlerServiceClient } from '@woodstream/proto';
import type { ResolvedOptions } from './options.js';

/**
 * One gRPC channel per node address, shared by every producer and consumer on that node.
 * Bounded by the number of node addresses the coordinator ever published to this client; a
 * long-lived client in a cluster whose nodes churn through fresh addresses keeps idle channels,
 * which grpc-js lets go idle (no connection) on their own.
 */
export class NodePool {
  private readonly clients = new Map<string, HandlerServiceClient>();
  private closed = false;

  constructor(private readonly options: ResolvedOptions) {}

  get(address: string): HandlerServiceClient {
    if (this.closed) throw new Error('node pool is closed'); // callers check closing first
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new HandlerServiceClient(
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
