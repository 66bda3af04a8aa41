import type { ServerDuplexStream, ServiceError, StatusObject } from '@grpc/grpc-js';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type {
  ConsumeRequest,
  ConsumeResponse,
  HandlerServiceServer,
  ProduceRequest,
  ProduceResponse,
} from '@woodstream/proto';
import { fromServiceError, StreamingError, toServiceError } from '@woodstream/streaming';
import { describe, expect, it } from 'vitest';
import { InProcessNodeClient } from './in-process.js';

type ProduceCall = ServerDuplexStream<ProduceRequest, ProduceResponse>;
type ConsumeCall = ServerDuplexStream<ConsumeRequest, ConsumeResponse>;

/** A node whose handlers the test drives: each opened stream is handed to the test. */
function node(): { client: InProcessNodeClient; produced: ProduceCall[]; consumed: ConsumeCall[] } {
  const produced: ProduceCall[] = [];
  const consumed: ConsumeCall[] = [];
  const handlers = {
    produce: (call: ProduceCall) => produced.push(call),
    consume: (call: ConsumeCall) => consumed.push(call),
  } as unknown as HandlerServiceServer;
  return { client: new InProcessNodeClient({ address: 'local:1', handlers }), produced, consumed };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const opened: ProduceResponse = { response: { $case: 'opened', opened: { serverId: 1n } } };

describe('in-process node streams', () => {
  it('delivers in order both ways, never inside write, and ends with an OK status', async () => {
    const { client, produced } = node();
    const call = client.produce();
    const data: ProduceResponse[] = [];
    const statuses: StatusObject[] = [];
    call.on('data', (m: ProduceResponse) => data.push(m));
    call.on('status', (s: StatusObject) => statuses.push(s));
    const close: ProduceRequest = { request: { $case: 'close', close: {} } };
    call.write(close);
    await turn();
    const server = produced[0] as ProduceCall;
    const requests: ProduceRequest[] = [];
    let clientEnded = false;
    server.on('data', (m: ProduceRequest) => requests.push(m));
    server.on('end', () => (clientEnded = true));
    await turn();
    expect(requests).toEqual([close]);
    server.write(opened);
    server.write(opened);
    expect(data).toHaveLength(0); // not synchronously
    call.end(); // half-close: the server still answers
    await turn();
    expect(clientEnded).toBe(true);
    expect(data).toEqual([opened, opened]);
    expect(statuses).toHaveLength(0);
    server.end();
    await turn();
    expect(statuses.map((s) => s.code)).toEqual([GrpcStatus.OK]);
  });

  it('carries the node error trailer to the client as a typed error', async () => {
    const { client, produced } = node();
    const call = client.produce();
    const errors: Error[] = [];
    const statuses: StatusObject[] = [];
    call.on('error', (e: Error) => errors.push(e));
    call.on('status', (s: StatusObject) => statuses.push(s));
    await turn();
    const server = produced[0] as ProduceCall;
    server.emit(
      'error',
      toServiceError(new StreamingError('CHANNEL_NOT_EXIST', 'no such pchannel')),
    );
    expect(statuses).toHaveLength(1);
    const typed = fromServiceError(errors[0]);
    expect(typed.code).toBe('CHANNEL_NOT_EXIST');
    expect((errors[0] as ServiceError).code).toBe(statuses[0]?.code);
    // Nothing is delivered after the status.
    server.write(opened);
    await turn();
    expect(statuses).toHaveLength(1);
  });

  it('cancel ends the client with CANCELLED and tells the server', async () => {
    const { client, consumed } = node();
    const call = client.consume();
    const statuses: StatusObject[] = [];
    call.on('error', () => undefined);
    call.on('status', (s: StatusObject) => statuses.push(s));
    await turn();
    const server = consumed[0] as ConsumeCall;
    let isCancelled = false;
    server.on('cancelled', () => (isCancelled = true));
    call.cancel();
    expect(statuses.map((s) => s.code)).toEqual([GrpcStatus.CANCELLED]);
    await turn();
    expect(isCancelled).toBe(true);
    expect(fromServiceError(statuses[0]).code).toBe('ON_SHUTDOWN');
  });

  it('a paused client holds deliveries, the server sees write return false, then drain after resume', async () => {
    const { client, consumed } = node();
    const call = client.consume();
    const data: ConsumeResponse[] = [];
    call.on('data', (m: ConsumeResponse) => data.push(m));
    call.pause();
    await turn();
    const server = consumed[0] as ConsumeCall;
    let drained = 0;
    server.on('drain', () => drained++);
    const tick: ConsumeResponse = { response: { $case: 'timeTick', timeTick: { timeTick: 1n } } };
    let accepted = 0;
    while (server.write(tick)) accepted++;
    expect(accepted).toBeGreaterThan(0);
    await turn();
    expect(data).toHaveLength(0);
    call.resume();
    await turn();
    expect(data).toHaveLength(accepted + 1);
    expect(drained).toBe(1);
  });
});
