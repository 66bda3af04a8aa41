import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { metrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { METRICS } from '@woodstream/observability';
import {
  HandlerServiceClient,
  ManagerServiceClient,
  type ProduceResponse,
} from '@woodstream/proto';
import { fromServiceError } from '@woodstream/streaming';
import { makeTempDir, waitFor } from '@woodstream/testing';
import { FileMetadataStore, Woodpecker } from '@woodstream/woodpecker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StreamingNode, type StreamingNodeOptions } from './streaming-node.js';

describe('node limit metrics', () => {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
  const provider = new MeterProvider({ readers: [reader] });
  beforeAll(() => {
    metrics.setGlobalMeterProvider(provider);
  });
  afterAll(async () => {
    await provider.shutdown();
    metrics.disable();
  });

  /** The summed value of each metric in a fresh collection. */
  async function collect(): Promise<Map<string, number>> {
    exporter.reset();
    await reader.forceFlush();
    const out = new Map<string, number>();
    for (const rm of exporter.getMetrics())
      for (const sm of rm.scopeMetrics)
        for (const m of sm.metrics) {
          let sum = 0;
          for (const p of m.dataPoints) if (typeof p.value === 'number') sum += p.value;
          out.set(m.descriptor.name, sum);
        }
    return out;
  }

  /**
   * Runs `body` against a node (local WAL in a temp dir) with `pchannel` assigned at term 1,
   * then stops everything, also when `body` fails.
   */
  async function withNode(
    options: Partial<StreamingNodeOptions>,
    pchannel: { name: string; term: bigint; accessMode: number },
    body: (handler: InstanceType<typeof HandlerServiceClient>) => Promise<void>,
  ): Promise<void> {
    await using dir = await makeTempDir('node-telemetry');
    const metadata = await FileMetadataStore.open({ path: join(dir.path, 'meta.log') });
    const wal = Woodpecker.open({
      metadata,
      storage: { mode: 'local', rootDir: join(dir.path, 'wal') },
    });
    const node = await StreamingNode.start({ drainTimeoutMs: 0, ...options }, { wal, metadata });
    const manager = new ManagerServiceClient(node.address, credentials.createInsecure());
    const handler = new HandlerServiceClient(node.address, credentials.createInsecure());
    try {
      await new Promise<void>((resolve, reject) =>
        manager.assign({ pchannel }, (err) => (err ? reject(fromServiceError(err)) : resolve())),
      );
      await body(handler);
    } finally {
      manager.close();
      handler.close();
      await node.stop({ drain: false });
      await wal.close();
      await metadata.close();
    }
  }

  it('reports open streams, refused streams and the node in-flight bytes', async () => {
    const pchannel = { name: 'wal-0000', term: 1n, accessMode: 1 };
    await withNode({ timeTickIntervalMs: 50, maxStreamsPerNode: 1 }, pchannel, async (handler) => {
      const first = handler.produce();
      let opened = false;
      first.on('data', () => (opened = true));
      first.on('error', () => undefined);
      first.write({ request: { $case: 'open', open: { pchannel, producerId: 0n } } });
      await waitFor(() => opened, { timeoutMs: 10_000 });
      const second = handler.produce();
      let refused: unknown;
      second.on('error', (e) => (refused = e));
      second.write({ request: { $case: 'open', open: { pchannel, producerId: 0n } } });
      await waitFor(() => refused !== undefined, { timeoutMs: 10_000 });
      expect(fromServiceError(refused)).toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
      const seen = await collect();
      expect(seen.get(METRICS.nodeStreamsOpen.name)).toBe(1);
      expect(seen.get(METRICS.nodeStreamsRefused.name)).toBe(1);
      expect(seen.get(METRICS.nodeProduceInflightBytes.name)).toBe(0);
      first.end();
      await waitFor(async () => (await collect()).get(METRICS.nodeStreamsOpen.name) === 0, {
        timeoutMs: 10_000,
        description: 'the slot released',
      });
    });
  });

  it('counts re-sent messages answered with their stored result', async () => {
    const pchannel = { name: 'wal-0001', term: 1n, accessMode: 1 };
    await withNode({}, pchannel, async (handler) => {
      const call = handler.produce();
      let answered = 0;
      call.on('data', (res: ProduceResponse) => {
        if (res.response?.$case === 'result') answered++;
      });
      call.on('error', () => undefined);
      call.write({ request: { $case: 'open', open: { pchannel, producerId: 7n } } });
      const send = (requestId: number) =>
        call.write({
          request: {
            $case: 'produce',
            produce: {
              requestId,
              vchannel: 'v',
              message: { payload: Buffer.from('x'), properties: {} },
              sequence: 1,
            },
          },
        });
      // The same message twice (a retry on the same stream, say after a lost answer).
      send(1);
      await waitFor(() => answered === 1, { timeoutMs: 10_000 });
      send(2);
      await waitFor(() => answered === 2, { timeoutMs: 10_000 });
      const seen = await collect();
      expect(seen.get(METRICS.produceDeduplicated.name)).toBe(1);
      expect(seen.get(METRICS.produceMessages.name)).toBe(2);
      call.end();
    });
  });
});
