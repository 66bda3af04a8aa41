// Test helpers: a ManagerService that records calls and can be told to fail or hang per
// channel, and node session keys written the way a streaming node writes them.
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import {
  ManagerServiceService,
  type ManagerServiceServer,
  type AssignRequest,
} from '@woodstream/proto';
import {
  StreamingError,
  streamingKeys,
  toServiceError,
  type NodeSession,
} from '@woodstream/streaming';
import type { Lease, MetadataStore } from '@woodstream/woodpecker';

/** Orders calls across fake nodes of one test process. */
let nextSeq = 0;

export interface RecordedCall {
  /** Global order of arrival across all fake nodes. */
  seq: number;
  op: 'assign' | 'remove';
  pchannel: string;
  term: number;
}

type Behaviour = { kind: 'fail'; error: StreamingError } | { kind: 'hang' };

/** A fake streaming node's ManagerService on a loopback port. */
export interface FakeNode {
  readonly serverId: number;
  readonly address: string;
  readonly calls: RecordedCall[];
  /** Channels this node currently holds (assigned and not removed), with their terms. */
  readonly held: Map<string, number>;
  /** Runs inside Assign before it answers (e.g. to read metadata); a throw fails the call. */
  onAssign: ((pchannel: string, term: number) => Promise<void>) | undefined;
  failAssign(pchannel: string, error: StreamingError): void;
  /** Assign of `pchannel` never answers until `release` or until the caller cancels. */
  hangAssign(pchannel: string): void;
  release(pchannel: string): void;
  /** Number of Assign calls hanging now. */
  hanging(): number;
  stop(): Promise<void>;
}

export async function startFakeNode(serverId: number): Promise<FakeNode> {
  const server = new Server();
  const calls: RecordedCall[] = [];
  const held = new Map<string, number>();
  const behaviours = new Map<string, Behaviour>();
  const hung = new Map<string, (() => void)[]>();
  let hangingNow = 0;

  const termOf = (request: AssignRequest): number => Number(request.pchannel?.term ?? 0n);
  const handlers: ManagerServiceServer = {
    assign(call: ServerUnaryCall<AssignRequest, object>, callback: sendUnaryData<object>) {
      const name = call.request.pchannel?.name ?? '';
      const term = termOf(call.request);
      calls.push({ seq: nextSeq++, op: 'assign', pchannel: name, term });
      void (async () => {
        await node.onAssign?.(name, term);
        const behaviour = behaviours.get(name);
        if (behaviour?.kind === 'fail') throw behaviour.error;
        if (behaviour?.kind === 'hang') {
          hangingNow++;
          try {
            await new Promise<void>((resolve, reject) => {
              hung.set(name, [...(hung.get(name) ?? []), resolve]);
              call.on('cancelled', () => reject(new StreamingError('ON_SHUTDOWN', 'cancelled')));
            });
          } finally {
            hangingNow--;
          }
        }
        held.set(name, term);
      })().then(
        () => callback(null, {}),
        (err: unknown) => callback(toServiceError(err)),
      );
    },
    remove(call, callback) {
      const name = call.request.pchannel?.name ?? '';
      const term = Number(call.request.pchannel?.term ?? 0n);
      calls.push({ seq: nextSeq++, op: 'remove', pchannel: name, term });
      const current = held.get(name);
      if (current === undefined) {
        callback(toServiceError(new StreamingError('CHANNEL_NOT_EXIST', `${name} not here`)));
        return;
      }
      if (current > term) {
        callback(
          toServiceError(new StreamingError('IGNORED_OPERATION', `${name}: holds a newer term`)),
        );
        return;
      }
      held.delete(name);
      callback(null, {});
    },
    collectStatus(_call, callback) {
      callback(null, {
        stopping: false,
        channels: [...held].map(([name, term]) => ({
          pchannel: { name, term: BigInt(term), accessMode: 1 },
          timeTick: 0n,
          producers: 0,
          consumers: 0,
        })),
      });
    },
  };
  server.addService(ManagerServiceService, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const node: FakeNode = {
    serverId,
    address: `127.0.0.1:${port}`,
    calls,
    held,
    onAssign: undefined,
    failAssign: (pchannel, error) => behaviours.set(pchannel, { kind: 'fail', error }),
    hangAssign: (pchannel) => behaviours.set(pchannel, { kind: 'hang' }),
    release(pchannel) {
      behaviours.delete(pchannel);
      for (const resolve of hung.get(pchannel) ?? []) resolve();
      hung.delete(pchannel);
    },
    hanging: () => hangingNow,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const name of [...hung.keys()]) node.release(name);
        server.forceShutdown();
        resolve();
      }),
  };
  return node;
}

/** A node session key as a streaming node writes it: lease-bound JSON NodeSession. */
export interface FakeSession {
  readonly lease: Lease;
  setStopping(stopping: boolean): Promise<void>;
  /** Revokes the lease: the key disappears, as when a node dies and its lease expires. */
  remove(): Promise<void>;
}

export async function registerSession(
  store: MetadataStore,
  node: { serverId: number; address: string },
  options: { stopping?: boolean; ttlMs?: number } = {},
): Promise<FakeSession> {
  const lease = await store.grantLease(options.ttlMs ?? 10_000);
  const write = async (stopping: boolean): Promise<void> => {
    const session: NodeSession = {
      serverId: node.serverId,
      address: node.address,
      version: 'test',
      stopping,
      startedAtMs: Date.now(),
    };
    await store.txn(
      [],
      [
        {
          type: 'put',
          key: streamingKeys.nodeSession(node.serverId),
          value: Buffer.from(JSON.stringify(session)),
          leaseId: lease.id,
        },
      ],
    );
  };
  await write(options.stopping ?? false);
  return { lease, setStopping: write, remove: () => lease.revoke() };
}
