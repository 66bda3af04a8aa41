import { metrics, type Attributes } from '@opentelemetry/api';

/**
 * Telemetry of the WAL through the OpenTelemetry API: a no-op unless the application registers
 * an SDK. All metric names and units are in WAL_METRICS below.
 */
export interface WalTelemetry {
  /** Per entry: time from append to acknowledgement. */
  recordAppendLatency(latencyMs: number): void;
  /** Per acknowledged block: how many entries and payload bytes it acknowledged. */
  recordAcked(entries: number, payloadBytes: number): void;
  recordFlush(blockBytes: number, latencyMs: number): void;
  recordError(operation: string): void;
}

/** Metric names and units of the WAL, in one place. */
export const WAL_METRICS = {
  appendLatency: { name: 'woodpecker.append.duration', unit: 'ms' },
  appendBytes: { name: 'woodpecker.append.bytes', unit: 'By' },
  appendEntries: { name: 'woodpecker.append.entries', unit: '{entry}' },
  flushBytes: { name: 'woodpecker.flush.size', unit: 'By' },
  flushLatency: { name: 'woodpecker.flush.duration', unit: 'ms' },
  errors: { name: 'woodpecker.errors', unit: '{error}' },
  storageRequests: { name: 'woodpecker.storage.requests', unit: '{request}' },
  storageDuration: { name: 'woodpecker.storage.duration', unit: 'ms' },
} as const;

/** Creates the WAL's instruments for one log (the log name is an attribute). */
export function createWalTelemetry(logName: string, mode: 'local' | 'object'): WalTelemetry {
  const meter = metrics.getMeter('@woodstream/woodpecker');
  const attrs: Attributes = { 'woodpecker.log': logName, 'woodpecker.mode': mode };
  const appendLatency = meter.createHistogram(WAL_METRICS.appendLatency.name, {
    unit: WAL_METRICS.appendLatency.unit,
    description: 'Time from append to acknowledgement',
  });
  const appendBytes = meter.createCounter(WAL_METRICS.appendBytes.name, {
    unit: WAL_METRICS.appendBytes.unit,
    description: 'Payload bytes acknowledged',
  });
  const appendEntries = meter.createCounter(WAL_METRICS.appendEntries.name, {
    unit: WAL_METRICS.appendEntries.unit,
    description: 'Entries acknowledged',
  });
  const flushBytes = meter.createHistogram(WAL_METRICS.flushBytes.name, {
    unit: WAL_METRICS.flushBytes.unit,
    description: 'Size of each block written',
  });
  const flushLatency = meter.createHistogram(WAL_METRICS.flushLatency.name, {
    unit: WAL_METRICS.flushLatency.unit,
    description: 'Time to make one block durable',
  });
  const errors = meter.createCounter(WAL_METRICS.errors.name, {
    unit: WAL_METRICS.errors.unit,
    description: 'Failures by operation',
  });
  return {
    recordAppendLatency(latencyMs) {
      appendLatency.record(latencyMs, attrs);
    },
    recordAcked(entries, payloadBytes) {
      appendBytes.add(payloadBytes, attrs);
      appendEntries.add(entries, attrs);
    },
    recordFlush(blockBytes, latencyMs) {
      flushBytes.record(blockBytes, attrs);
      flushLatency.record(latencyMs, attrs);
    },
    recordError(operation) {
      errors.add(1, { ...attrs, 'woodpecker.operation': operation });
    },
  };
}
