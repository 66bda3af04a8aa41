import type { ClientDuplexStream } from '@grpc/grpc-js';
import {
  encodeProduceRequestParts,
  HandlerServiceClient,
  HandlerServiceService,
  type ConsumeRequest,
  type ConsumeResponse,
  type ProduceRequest,
  type ProduceResponse,
} from '@woodstream/proto';
import {
  CLIENT_MAX_RECEIVE_MESSAGE_BYTES,
  FramedClientCall,
  framedCodecOf,
} from '@woodstream/streaming';
import { InProcessNodeClient, type NodeHandlerClient } from './in-process.js';
import type { ResolvedOptions } from './options.js';
import type { ClientStats } from './types.js';

/**
 * One client per node address, shared by every producer and consumer on that node: for a remote
 * node a gRPC channel (consume, and produce when framed produce is off or the node does not
 * speak it) plus one framed-stream connection per open produce stream (ADR 0005); for a node in
 * this process a direct path (see `inProcessNodes`).
 * Bounded by the number of node addresses the coordinator ever published to this client; a
 * long-lived client in a cluster whose nodes churn through fresh addresses keeps idle channels,
 * which grpc-js lets go idle (no connection) on their own; framed connections close with their
 * produce streams.
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
          : new RemoteNodeClient(
              address,
              new HandlerServiceClient(
                address,
                this.options.credentials,
                this.options.channelOptions,
              ),
              this.options.framedProduce,
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

const PRODUCE = HandlerServiceService.produce;
/** How long produce to a node that did not answer the framed stream uses gRPC before trying again. */
const GRPC_AFTER_NOT_FRAMED_MS = 5 * 60_000;

/** A node in another process: consume over gRPC; produce over the framed stream or gRPC. */
class RemoteNodeClient implements NodeHandlerClient {
  constructor(
    private readonly address: string,
    private readonly grpc: HandlerServiceClient,
    private readonly framedProduce: boolean,
  ) {}

  /** Until then, produce goes over gRPC: the node did not answer the framed stream. */
  private grpcUntilMs = 0;

  produce(): ClientDuplexStream<ProduceRequest, ProduceResponse> {
    if (!this.framedProduce || Date.now() < this.grpcUntilMs) return this.grpc.produce();
    // One TCP connection per produce stream: it carries a producer's whole pipeline.
    return new FramedClientCall<ProduceRequest, ProduceResponse>(
      {
        address: this.address,
        method: PRODUCE.path,
        maxBodyBytes: CLIENT_MAX_RECEIVE_MESSAGE_BYTES,
        // A node without the framed stream (an older version, or behind an HTTP/2 proxy): this
        // stream goes on over gRPC, and so do later ones to that node for a while. Not for good:
        // a node that was only stopping or full looks the same, and its address may come back.
        onNotFramed: () => {
          this.grpcUntilMs = Date.now() + GRPC_AFTER_NOT_FRAMED_MS;
        },
        fallback: () => this.grpc.produce(),
      },
      {
        ...framedCodecOf(PRODUCE),
        // Large payloads go to the socket as they are: callers keep them unchanged until their
        // append settles, which is after the write completed.
        serializeRequestParts: (req) => encodeProduceRequestParts(req),
      },
    ) as unknown as ClientDuplexStream<ProduceRequest, ProduceResponse>;
  }

  consume(): ClientDuplexStream<ConsumeRequest, ConsumeResponse> {
    return this.grpc.consume();
  }

  close(): void {
    this.grpc.close();
  }
}
