import { context, metrics, propagation, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import {
  BatchSpanProcessor,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { abortable } from '@woodstream/common';

// Stable attribute key; the semantic-conventions package keeps it among incubating names.
const ATTR_SERVICE_INSTANCE_ID = 'service.instance.id';

export interface TelemetryOptions {
  /** `service.name` of every metric and span, e.g. `woodstream-node`. */
  serviceName: string;
  /** `service.instance.id`, e.g. the node's server id or the coordinator id. */
  serviceInstanceId: string;
  /**
   * Base URL of an OTLP/HTTP collector (the value of OTEL_EXPORTER_OTLP_ENDPOINT, e.g.
   * `http://collector:4318`); spans go to `<url>/v1/traces`. A URL that already ends in
   * `/v1/traces` is used as is. Without it (and without `spanExporter`) tracing stays off:
   * spans are the API's no-ops and no trace context is added to messages.
   */
  otlpTracesEndpoint?: string;
  /** For tests: an exporter that gets each span synchronously when it ends. */
  spanExporter?: SpanExporter;
}

/** The process's telemetry once {@link startTelemetry} registered it. */
export interface Telemetry {
  /**
   * Collects every metric now and renders it in the Prometheus text exposition format (what
   * GET /metrics returns). Rejects with `signal.reason` when aborted first.
   */
  collect(signal: AbortSignal): Promise<string>;
  /**
   * Flushes pending spans, stops the exporters and unregisters the global providers; a later
   * startTelemetry may register again. Idempotent. The signal abandons the wait for the flush.
   */
  shutdown(options?: { signal?: AbortSignal }): Promise<void>;
}

/** startTelemetry was called while an earlier registration is still running in this process. */
export class TelemetryAlreadyStartedError extends Error {
  readonly code = 'TELEMETRY_ALREADY_STARTED';
  readonly retryable = false;
  constructor() {
    super(
      'telemetry is already started in this process: call shutdown() on the running instance first',
    );
    this.name = 'TelemetryAlreadyStartedError';
  }
}

/** A pull reader: collects when asked (on a GET /metrics), never on a timer. */
class OnDemandReader extends MetricReader {
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

let running: Telemetry | undefined;

/**
 * Registers the global OpenTelemetry MeterProvider and TracerProvider (AsyncLocalStorage
 * context, W3C trace-context propagation) for this process. Instruments created through the
 * OTel API before or after this call report to it. Throws TelemetryAlreadyStartedError when a
 * registration is already running: the OTel API keeps one global provider per process, and a
 * silent second registration would split metrics between two readers.
 */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  if (running !== undefined) throw new TelemetryAlreadyStartedError();
  const resource = resourceFromAttributes({
    [ATTR_SERVICE_NAME]: options.serviceName,
    [ATTR_SERVICE_INSTANCE_ID]: options.serviceInstanceId,
  });

  const reader = new OnDemandReader();
  const meterProvider = new MeterProvider({ resource, readers: [reader] });
  // The exporter package ships its own copy of the metrics SDK (a pinned patch release); only its
  // serializer is used, on data of the SDK registered here, whose shapes are the same.
  const serializer = new PrometheusSerializer();

  const spanProcessors: SpanProcessor[] = [];
  if (options.spanExporter !== undefined)
    spanProcessors.push(new SimpleSpanProcessor(options.spanExporter));
  if (options.otlpTracesEndpoint !== undefined && options.otlpTracesEndpoint !== '') {
    spanProcessors.push(
      new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesUrl(options.otlpTracesEndpoint) })),
    );
  }
  // Tracing is registered only when spans go somewhere: without it every span is the API's
  // no-op, and messages carry no trace context (no bytes, no work per message).
  const tracerProvider =
    spanProcessors.length === 0 ? undefined : new NodeTracerProvider({ resource, spanProcessors });

  metrics.setGlobalMeterProvider(meterProvider);
  // Also registers the AsyncLocalStorage context manager, so spans started in awaited code
  // find their parent.
  tracerProvider?.register({ propagator: new W3CTraceContextPropagator() });

  let stopping: Promise<void> | undefined;
  const telemetry: Telemetry = {
    async collect(signal) {
      signal.throwIfAborted();
      const { resourceMetrics, errors } = await abortable(reader.collect(), signal);
      // Partial results are still useful to a scraper; a failing callback must not hide the rest.
      void errors;
      return serializer.serialize(resourceMetrics);
    },
    shutdown(shutdownOptions = {}) {
      stopping ??= (async () => {
        try {
          await Promise.allSettled([meterProvider.shutdown(), tracerProvider?.shutdown()]);
        } finally {
          metrics.disable();
          trace.disable();
          propagation.disable();
          context.disable();
          if (running === telemetry) running = undefined;
        }
      })();
      const { signal } = shutdownOptions;
      return abortable(stopping, signal);
    },
  };
  running = telemetry;
  return telemetry;
}

function tracesUrl(endpoint: string): string {
  const trimmed = endpoint.replace(/\/+$/, '');
  return trimmed.endsWith('/v1/traces') ? trimmed : `${trimmed}/v1/traces`;
}
