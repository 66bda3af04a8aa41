import {
  metrics,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Link,
  type Span,
} from '@opentelemetry/api';
import { createCounter, createHistogram, METRICS, SCOPES, SPANS } from '@woodstream/observability';

/**
 * Telemetry of the WAL through the OpenTelemetry API: a no-op unless the application registers
 * an SDK. Names and units are in the project's METRICS and SPANS tables.
 */
export interface WalTelemetry {
  /** Per entry: time from append to acknowledgement. */
  recordAppendLatency(latencyMs: number): void;
  /** Per acknowledged block: how many entries and payload bytes it acknowledged. */
  recordAcked(entries: number, payloadBytes: number): void;
  recordFlush(blockBytes: number, latencyMs: number): void;
  recordError(operation: string): void;
  /**
   * Starts the span of one appended entry (a child of the active span), or returns undefined
   * when tracing does not record it: callers keep nothing per entry then.
   */
  startAppend(sizeBytes: number): Span | undefined;
  /** Starts the span of one write of blocks, linked to the recorded spans of its entries. */
  startFlush(blocks: number, sizeBytes: number, entrySpans: readonly Span[]): Span | undefined;
}

// Links per flush span: enough to follow a few appends, bounded for large group commits.
const MAX_FLUSH_LINKS = 32;

/** Creates the WAL's instruments for one log (the log name is an attribute). */
export function createWalTelemetry(logName: string, mode: 'local' | 'object'): WalTelemetry {
  const meter = metrics.getMeter(SCOPES.wal);
  const tracer = trace.getTracer(SCOPES.wal);
  const attrs: Attributes = { 'woodpecker.log': logName, 'woodpecker.mode': mode };
  const appendLatency = createHistogram(meter, METRICS.walAppendDuration);
  const appendBytes = createCounter(meter, METRICS.walAppendBytes);
  const appendEntries = createCounter(meter, METRICS.walAppendEntries);
  const flushBytes = createHistogram(meter, METRICS.walFlushSize);
  const flushLatency = createHistogram(meter, METRICS.walFlushDuration);
  const errors = createCounter(meter, METRICS.walErrors);
  return {
    recordAppendLatency(latencyMs) {
      // Per entry, so without attributes: the SDK hashes an attribute set on every record (it
      // sorts and serialises the keys), which cost about a tenth of a busy node's CPU at 100k
      // entries/s. Per-log rates are on the per-block counters below.
      appendLatency.record(latencyMs);
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
    startAppend(sizeBytes) {
      const span = tracer.startSpan(SPANS.walAppend.name, { kind: SpanKind.INTERNAL });
      if (!span.isRecording()) return undefined;
      span.setAttributes({ ...attrs, 'woodpecker.entry.size': sizeBytes });
      return span;
    },
    startFlush(blocks, sizeBytes, entrySpans) {
      const links: Link[] = [];
      for (const s of entrySpans) {
        if (links.length >= MAX_FLUSH_LINKS) break;
        links.push({ context: s.spanContext() });
      }
      // A root: one write carries entries of many producers; links lead to each of them.
      const span = tracer.startSpan(SPANS.walFlush.name, {
        kind: SpanKind.INTERNAL,
        root: true,
        links,
        attributes: {
          ...attrs,
          'woodpecker.flush.blocks': blocks,
          'woodpecker.flush.size': sizeBytes,
        },
      });
      return span.isRecording() ? span : undefined;
    },
  };
}

/** Ends `span` when `outcome` settles, marking a rejection as an error. */
export function endSpanWith(span: Span, outcome: Promise<unknown>): void {
  outcome.then(
    () => span.end(),
    (err: unknown) => {
      span.setStatus({
        code: SpanStatusCode.ERROR,
        message: err instanceof Error ? err.message : String(err),
      });
      span.end();
    },
  );
}
