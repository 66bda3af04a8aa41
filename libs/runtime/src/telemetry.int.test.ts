import {
  InMemorySpanExporter,
  METRICS,
  prometheusName,
  SPANS,
  startTelemetry,
  type MetricDefinition,
  type ReadableSpan,
} from '@woodstream/observability';
import { pchannelForVChannel } from '@woodstream/streaming';
import { MemoryObjectStore } from '@woodstream/woodpecker';
import { describe, expect, it } from 'vitest';
import { startLocalCluster } from '../test/local-cluster.js';

/**
 * The value of one series in Prometheus text: the line of `name` whose labels include every
 * pair of `labels`. Undefined when there is none; throws when several match (ambiguous test).
 */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const matches = text.split('\n').filter((line) => {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) return false;
    return Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
  });
  if (matches.length > 1)
    throw new Error(`${matches.length} series of ${name} match ${JSON.stringify(labels)}`);
  const line = matches[0];
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

const series = (def: MetricDefinition, suffix = ''): string => prometheusName(def) + suffix;

describe('telemetry of a running cluster', () => {
  it('links delivery spans to producer spans and reports produce, consume, WAL and coordinator series', async () => {
    // Registered first: instruments obtained before it would stay no-ops.
    const spans = new InMemorySpanExporter();
    const telemetry = startTelemetry({
      serviceName: 'woodstream-test',
      serviceInstanceId: 'telemetry-int',
      spanExporter: spans,
    });
    try {
      await using cluster = await startLocalCluster({
        // Object mode over an in-memory store: every block write is a storage request.
        wal: {
          storage: { mode: 'object', objectStore: new MemoryObjectStore() },
          limits: { flushAgeMs: 2 },
        },
        node: { timeTickIntervalMs: 50, drainTimeoutMs: 0 },
        coordinator: { pchannelCount: 2, balanceIntervalMs: 100 },
      });
      const { coordinator } = cluster;
      const client = await cluster.connect();
      const vchannel = 'traced';
      const pchannel = pchannelForVChannel(
        vchannel,
        coordinator.listChannels().map((c) => c.name),
      );
      const payload = new Uint8Array(100);
      // One batch (one span, one frame) and single appends (a span each).
      await client.appendBatch(Array.from({ length: 10 }, () => ({ vchannel, payload })));
      for (let i = 0; i < 10; i++) await client.append({ vchannel, payload });
      const sent = 20;

      const subscription = client.read({ vchannel, from: 'earliest' });
      // Read with the iterator, not for-await: leaving that loop would close the stream, and
      // the consumer must still be connected when metrics are collected.
      const events = subscription[Symbol.asyncIterator]();
      for (let received = 0; received < sent;) {
        const next = await events.next();
        if (next.done === true) throw new Error('the read ended early');
        if (next.value.type === 'message') received++;
      }

      // --- spans -------------------------------------------------------------------------
      const finished = spans.getFinishedSpans();
      const named = (name: string): ReadableSpan[] => finished.filter((s) => s.name === name);
      const producers = named(SPANS.clientProduce.name);
      expect(producers).toHaveLength(11);
      const producerIds = new Set(
        producers.map((s) => `${s.spanContext().traceId}/${s.spanContext().spanId}`),
      );
      const deliveries = named(SPANS.nodeDeliver.name).filter(
        (s) => s.attributes.vchannel === vchannel,
      );
      expect(deliveries).toHaveLength(sent);
      for (const delivery of deliveries) {
        const link = delivery.links[0]?.context;
        expect(link && producerIds.has(`${link.traceId}/${link.spanId}`)).toBe(true);
      }

      const nodeProduces = named(SPANS.nodeProduce.name).filter(
        (s) => s.attributes.pchannel === pchannel,
      );
      expect(nodeProduces.length).toBeGreaterThanOrEqual(1);
      const nodeProduceIds = new Set(nodeProduces.map((s) => s.spanContext().spanId));
      const appends = named(SPANS.walAppend.name).filter(
        (s) => s.parentSpanContext !== undefined && nodeProduceIds.has(s.parentSpanContext.spanId),
      );
      expect(appends).toHaveLength(sent);
      const flushes = named(SPANS.walFlush.name);
      expect(flushes.length).toBeGreaterThan(0);
      const appendIds = new Set(appends.map((s) => s.spanContext().spanId));
      expect(flushes.some((f) => f.links.some((l) => appendIds.has(l.context.spanId)))).toBe(true);
      const puts = named(SPANS.objectStorage.name).filter(
        (s) => s.attributes['woodpecker.operation'] === 'put',
      );
      expect(puts.length).toBeGreaterThan(0);
      const flushIds = new Set(flushes.map((s) => s.spanContext().spanId));
      expect(puts.some((p) => flushIds.has(p.parentSpanContext?.spanId ?? ''))).toBe(true);
      expect(named(SPANS.metadataStorage.name).length).toBeGreaterThan(0);

      // --- metrics ------------------------------------------------------------------------
      const text = await telemetry.collect(AbortSignal.timeout(10_000));
      const p = { pchannel };
      expect(sample(text, series(METRICS.produceMessages), { ...p, outcome: 'ok' })).toBe(sent);
      expect(sample(text, series(METRICS.produceBytes), p)).toBe(sent * payload.byteLength);
      const frames = sample(text, series(METRICS.produceDuration, '_count'), p) ?? 0;
      expect(frames).toBeGreaterThanOrEqual(nodeProduces.length);
      expect(frames).toBeLessThanOrEqual(sent);
      expect(sample(text, series(METRICS.produceInflight), p)).toBe(0);
      expect(sample(text, series(METRICS.producersConnected), p)).toBe(1);
      expect(sample(text, series(METRICS.consumeMessages), p)).toBe(sent);
      expect(sample(text, series(METRICS.consumeBytes), p)).toBe(sent * payload.byteLength);
      expect(sample(text, series(METRICS.consumersConnected), p)).toBe(1);
      const lag = sample(text, series(METRICS.timeTickLag), p);
      expect(lag).toBeGreaterThanOrEqual(0);
      expect(lag).toBeLessThan(5_000);
      expect(sample(text, series(METRICS.walChannels), { state: 'open' })).toBe(2);

      expect(sample(text, series(METRICS.coordinatorActive))).toBe(1);
      expect(sample(text, series(METRICS.coordinatorChannels), { state: 'ASSIGNED' })).toBe(2);
      expect(sample(text, series(METRICS.coordinatorNodes), { state: 'active' })).toBe(1);
      const version = coordinator.status().version;
      expect(version.local).toBeGreaterThanOrEqual(1);
      expect(sample(text, series(METRICS.assignmentVersion), { part: 'local' })).toBe(
        version.local,
      );
      expect(sample(text, series(METRICS.balanceRounds))).toBeGreaterThanOrEqual(1);
      expect(sample(text, series(METRICS.balanceDuration, '_count'))).toBeGreaterThanOrEqual(1);
      expect(sample(text, series(METRICS.channelMoves))).toBe(2);

      const walLog = { woodpecker_log: pchannel };
      // The node's entries plus its own time ticks: at least what was sent.
      expect(sample(text, series(METRICS.walAppendEntries), walLog)).toBeGreaterThanOrEqual(sent);
      expect(sample(text, series(METRICS.walFlushSize, '_count'), walLog)).toBeGreaterThan(0);
      expect(
        sample(text, series(METRICS.storageRequests), {
          woodpecker_store: 'object',
          woodpecker_operation: 'put',
          woodpecker_outcome: 'ok',
        }),
      ).toBeGreaterThan(0);
      expect(
        sample(text, series(METRICS.storageRequests), {
          woodpecker_store: 'metadata',
          woodpecker_operation: 'txn',
          woodpecker_outcome: 'ok',
        }),
      ).toBeGreaterThan(0);
    } finally {
      await telemetry.shutdown();
    }
  });
});
