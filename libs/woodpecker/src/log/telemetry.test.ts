import { metrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileMetadataStore } from '../storage/file-metadata-store.js';
import { instrumentMetadataStore } from '../storage/instrumented.js';
import { MemoryObjectStore } from '../storage/memory-object-store.js';
import { Woodpecker } from '../woodpecker.js';
import { METRICS } from '@woodstream/observability';

describe('WAL telemetry', () => {
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

  it('records append latency, bytes, flush sizes and storage requests once an SDK is registered', async () => {
    const metadata = await FileMetadataStore.open({});
    const objects = new MemoryObjectStore();
    const wp = Woodpecker.open({
      metadata,
      storage: { mode: 'object', objectStore: objects },
      limits: { flushAgeMs: 1 },
    });
    const writer = await (await wp.createLog('metered')).openWriter();
    await Promise.all(Array.from({ length: 10 }, () => writer.append(new Uint8Array(100))));
    await writer.close();
    await wp.close();
    await metadata.close();

    await reader.forceFlush();
    const points = new Map<string, { value: unknown; attributes: Record<string, unknown> }[]>();
    for (const rm of exporter.getMetrics()) {
      for (const sm of rm.scopeMetrics) {
        for (const m of sm.metrics) {
          points.set(m.descriptor.name, m.dataPoints);
        }
      }
    }
    const sum = (name: string): number =>
      (points.get(name) ?? []).reduce((n, p) => n + (typeof p.value === 'number' ? p.value : 0), 0);
    const count = (name: string): number =>
      (points.get(name) ?? []).reduce(
        (n, p) => n + ((p.value as { count?: number }).count ?? 0),
        0,
      );
    expect(sum(METRICS.walAppendEntries.name)).toBe(10);
    expect(sum(METRICS.walAppendBytes.name)).toBe(1000);
    expect(count(METRICS.walAppendDuration.name)).toBe(10);
    expect(count(METRICS.walFlushSize.name)).toBeGreaterThan(0);
    expect(sum(METRICS.storageRequests.name)).toBeGreaterThan(0);
    const ops = new Set(
      (points.get(METRICS.storageRequests.name) ?? []).map(
        (p) =>
          `${String(p.attributes['woodpecker.store'])}:${String(p.attributes['woodpecker.operation'])}`,
      ),
    );
    expect(ops).toContain('object:put');
    expect(ops).toContain('metadata:txn');
  });
});

describe('instrumentMetadataStore', () => {
  it('returns an instrumented store unchanged, so requests are not counted twice', async () => {
    const metadata = await FileMetadataStore.open({});
    const once = instrumentMetadataStore(metadata);
    expect(once).not.toBe(metadata);
    expect(instrumentMetadataStore(once)).toBe(once);
    await metadata.close();
  });
});
