// Public entry of @woodstream/observability: the one table of metric and span names, the
// process-wide OpenTelemetry set-up (Prometheus text on demand, OTLP traces when configured),
// and the trace context carried in message properties. It imports nothing of Woodstream's.
export {
  createCounter,
  createHistogram,
  createObservableCounter,
  createObservableGauge,
  createObservableUpDownCounter,
  createUpDownCounter,
  METRICS,
  prometheusName,
} from './metric-names.js';
export type { MetricDefinition, MetricKey, MetricKind } from './metric-names.js';
export { SCOPES, SPANS } from './span-names.js';
// For tests: pass one as `spanExporter` to read finished spans back.
export { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
export type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
export type { SpanDefinition } from './span-names.js';
export { startTelemetry, TelemetryAlreadyStartedError } from './telemetry.js';
export type { Telemetry, TelemetryOptions } from './telemetry.js';
export {
  extractTraceContext,
  injectTraceContext,
  isTraceProperty,
  TRACE_PROPERTIES,
  traceLogFields,
} from './trace-context.js';
