import { context, metrics, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createCounter,
  createHistogram,
  createObservableGauge,
  METRICS,
  prometheusName,
} from './metric-names.js';
import { startTelemetry, TelemetryAlreadyStartedError } from './telemetry.js';
import {
  extractTraceContext,
  injectTraceContext,
  TRACE_PROPERTIES,
  traceLogFields,
} from './trace-context.js';

describe('startTelemetry', () => {
  const exporter = new InMemorySpanExporter();
  const telemetry = startTelemetry({
    serviceName: 'woodstream-test',
    serviceInstanceId: 'unit-1',
    spanExporter: exporter,
  });
  afterAll(async () => {
    await telemetry.shutdown();
  });

  it('renders registered series in the Prometheus text format with their documented names', async () => {
    const meter = metrics.getMeter('test');
    createCounter(meter, METRICS.produceMessages).add(3, { pchannel: 'p0', outcome: 'ok' });
    createHistogram(meter, METRICS.walFlushSize).record(5000, {
      'woodpecker.log': 'l',
      'woodpecker.mode': 'local',
    });
    createObservableGauge(meter, METRICS.coordinatorActive).addCallback((r) => r.observe(1));

    const text = await telemetry.collect(AbortSignal.timeout(5_000));

    const counter = prometheusName(METRICS.produceMessages);
    expect(counter).toBe('woodstream_produce_messages_total');
    expect(text).toMatch(new RegExp(`^${counter}\\{pchannel="p0",outcome="ok",[^}]*\\} 3$`, 'm'));
    const histogram = prometheusName(METRICS.walFlushSize);
    expect(text).toMatch(new RegExp(`^${histogram}_count\\{[^}]*\\} 1$`, 'm'));
    expect(text).toMatch(new RegExp(`^${histogram}_bucket\\{[^}]*le="16384"[^}]*\\} 1$`, 'm'));
    expect(text).toMatch(/^woodstream_coordinator_active\{[^}]*\} 1$/m);
    expect(text).toContain('service_instance_id="unit-1"');
  });

  it('refuses a second registration while the first runs', () => {
    expect(() => startTelemetry({ serviceName: 'x', serviceInstanceId: 'y' })).toThrow(
      TelemetryAlreadyStartedError,
    );
  });

  it('rejects collect with the reason of an aborted signal', async () => {
    const controller = new AbortController();
    controller.abort(new Error('gone'));
    await expect(telemetry.collect(controller.signal)).rejects.toThrow('gone');
  });

  it('carries the producer span context through message properties', () => {
    const tracer = trace.getTracer('test');
    const span = tracer.startSpan('produce');
    const properties = injectTraceContext({ user: 'value' }, trace.setSpan(context.active(), span));
    span.end();
    expect(properties.user).toBe('value');
    expect(properties[TRACE_PROPERTIES.traceParent]).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);

    const extracted = extractTraceContext(properties);
    expect(extracted?.traceId).toBe(span.spanContext().traceId);
    expect(extracted?.spanId).toBe(span.spanContext().spanId);
    expect(extracted?.isRemote).toBe(true);
    expect(exporter.getFinishedSpans().map((s) => s.name)).toContain('produce');
  });

  it('writes nothing without an active span and ignores malformed or missing context', () => {
    expect(injectTraceContext({})).toEqual({});
    expect(extractTraceContext(undefined)).toBeUndefined();
    expect(extractTraceContext({})).toBeUndefined();
    expect(extractTraceContext({ [TRACE_PROPERTIES.traceParent]: 'garbage' })).toBeUndefined();
    expect(
      extractTraceContext({ [TRACE_PROPERTIES.traceParent]: `00-${'a'.repeat(200)}` }),
    ).toBeUndefined();
  });

  it('gives log fields of the active span', () => {
    const span = trace.getTracer('test').startSpan('work');
    const fields = context.with(trace.setSpan(context.active(), span), () => traceLogFields());
    span.end();
    expect(fields).toEqual({
      traceId: span.spanContext().traceId,
      spanId: span.spanContext().spanId,
    });
    expect(traceLogFields()).toEqual({});
  });
});
