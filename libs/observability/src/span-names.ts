/** One span Woodstream creates; documented in docs/metrics.md (checked by a unit test). */
export interface SpanDefinition {
  readonly name: string;
  readonly kind: 'client' | 'server' | 'producer' | 'consumer' | 'internal';
  readonly description: string;
}

/**
 * Every span name, in one table. Spans sit at RPC and storage boundaries only; names are
 * constant (the varying part, such as the operation, is an attribute) so that backends can
 * group them.
 */
export const SPANS = {
  clientProduce: {
    name: 'woodstream.client.produce',
    kind: 'producer',
    description:
      'One append of the client SDK, from the call to its result; its context travels in the message properties',
  },
  nodeProduce: {
    name: 'woodstream.node.produce',
    kind: 'server',
    description: 'One produce frame (one message or one batch) on a node, until its answer is sent',
  },
  nodeDeliver: {
    name: 'woodstream.node.deliver',
    kind: 'consumer',
    description:
      'Delivery of one data message to a consume stream; linked to the span that produced it',
  },
  walAppend: {
    name: 'woodpecker.append',
    kind: 'internal',
    description: 'One WAL entry, from append to acknowledgement (durable)',
  },
  walFlush: {
    name: 'woodpecker.flush',
    kind: 'internal',
    description:
      'One write of blocks to a segment (a file write + fdatasync, or object uploads); linked to the appends it carries',
  },
  objectStorage: {
    name: 'woodpecker.object',
    kind: 'client',
    description: 'One object storage request; attribute woodpecker.operation (put, get, ...)',
  },
  metadataStorage: {
    name: 'woodpecker.metadata',
    kind: 'client',
    description:
      'One metadata store request (etcd or embedded); attribute woodpecker.operation (get, range, txn, grantLease)',
  },
} as const satisfies Record<string, SpanDefinition>;

/** Instrumentation scope names: one per lib, used for meters and tracers alike. */
export const SCOPES = {
  node: '@woodstream/streaming-node',
  coordinator: '@woodstream/streaming-coordinator',
  client: '@woodstream/client',
  wal: '@woodstream/woodpecker',
} as const;
