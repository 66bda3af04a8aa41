import {
  context,
  propagation,
  trace,
  type Context,
  type SpanContext,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';

/**
 * Message property keys that carry the W3C trace context of the producer. They start with `_`,
 * the prefix reserved for keys Woodstream itself writes: applications cannot set them by
 * accident, and the streaming node accepts exactly these two reserved keys from producers.
 */
export const TRACE_PROPERTIES = {
  /** W3C `traceparent` of the producer's span. */
  traceParent: '_tp',
  /** W3C `tracestate`, when the producer's context has one. */
  traceState: '_ts',
} as const;

// Longest values accepted from the wire: a traceparent is 55 characters; W3C caps tracestate at
// 32 members, which fits in 512 characters in practice.
const MAX_TRACE_PARENT_LENGTH = 128;
const MAX_TRACE_STATE_LENGTH = 512;

const toProperty: Record<string, string> = {
  traceparent: TRACE_PROPERTIES.traceParent,
  tracestate: TRACE_PROPERTIES.traceState,
};

const setter: TextMapSetter<Record<string, string>> = {
  set(carrier, key, value) {
    const property = toProperty[key];
    // Only the trace context: baggage or other fields a propagator may add are not forwarded.
    if (property !== undefined) carrier[property] = value;
  },
};

const getter: TextMapGetter<Readonly<Record<string, string>>> = {
  keys: () => ['traceparent', 'tracestate'],
  get(carrier, key) {
    const property = toProperty[key];
    return property === undefined ? undefined : carrier[property];
  },
};

/**
 * Writes the trace context of `ctx` (default: the active context) into `properties` under
 * {@link TRACE_PROPERTIES}. Writes nothing when there is no valid span in the context or no
 * propagator is registered (no SDK), so untraced messages carry no extra bytes. Mutates and
 * returns `properties`.
 */
export function injectTraceContext(
  properties: Record<string, string>,
  ctx: Context = context.active(),
): Record<string, string> {
  if (!trace.isSpanContextValid(trace.getSpanContext(ctx) ?? INVALID)) return properties;
  propagation.inject(ctx, properties, setter);
  return properties;
}

const INVALID: SpanContext = { traceId: '', spanId: '', traceFlags: 0 };

/**
 * The producer's span context carried in `properties`, or undefined when there is none (or
 * it is malformed, or no propagator is registered). The result is marked remote; use it as a
 * span link or parent.
 */
export function extractTraceContext(
  properties: Readonly<Record<string, string>> | undefined,
): SpanContext | undefined {
  if (properties === undefined) return undefined;
  const parent = properties[TRACE_PROPERTIES.traceParent];
  if (parent === undefined || parent.length > MAX_TRACE_PARENT_LENGTH) return undefined;
  const state = properties[TRACE_PROPERTIES.traceState];
  const carrier: Record<string, string> =
    state === undefined || state.length > MAX_TRACE_STATE_LENGTH
      ? { [TRACE_PROPERTIES.traceParent]: parent }
      : { [TRACE_PROPERTIES.traceParent]: parent, [TRACE_PROPERTIES.traceState]: state };
  const extracted = trace.getSpanContext(propagation.extract(context.active(), carrier, getter));
  return extracted !== undefined && trace.isSpanContextValid(extracted) && extracted.isRemote
    ? extracted
    : undefined;
}

/**
 * Whether a producer-set property key is one of the reserved keys a producer may send (the
 * trace context). Values are checked for length; their format is checked on extraction.
 */
export function isTraceProperty(key: string, value: string): boolean {
  if (key === TRACE_PROPERTIES.traceParent) return value.length <= MAX_TRACE_PARENT_LENGTH;
  if (key === TRACE_PROPERTIES.traceState) return value.length <= MAX_TRACE_STATE_LENGTH;
  return false;
}

/**
 * `{ traceId, spanId }` of the active span when it is sampled, else an empty object: the fields
 * a log record carries so that logs and traces can be joined (a pino `mixin` fits).
 */
export function traceLogFields(): { traceId?: string; spanId?: string } {
  const span = trace.getActiveSpan();
  if (span === undefined) return {};
  const sc = span.spanContext();
  return trace.isSpanContextValid(sc) ? { traceId: sc.traceId, spanId: sc.spanId } : {};
}
