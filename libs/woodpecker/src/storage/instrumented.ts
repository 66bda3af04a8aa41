import { metrics, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { errorCode } from '@woodstream/common';
import { createCounter, createHistogram, METRICS, SCOPES, SPANS } from '@woodstream/observability';
import type { MetadataStore } from './metadata-store.js';
import type { ObjectStore } from './object-store.js';

type AsyncMethods<T> = {
  [K in keyof T]: T[K] extends (...args: never[]) => Promise<unknown> ? K : never;
}[keyof T];

// Proxies made here: wrapping one again would count and trace every request twice.
const instrumented = new WeakSet<object>();

/**
 * Wraps a port so that every request is counted, timed and traced through the OpenTelemetry
 * API (`woodpecker.storage.requests`, `woodpecker.storage.duration`, spans
 * `woodpecker.object` / `woodpecker.metadata`) with the store kind, the operation and the
 * outcome (`ok` or the error code). A no-op unless an SDK is registered. Idempotent.
 */
function instrument<T extends object>(
  target: T,
  kind: 'object' | 'metadata',
  methods: readonly AsyncMethods<T>[],
): T {
  if (instrumented.has(target)) return target;
  const meter = metrics.getMeter(SCOPES.wal);
  const tracer = trace.getTracer(SCOPES.wal);
  const spanName = kind === 'object' ? SPANS.objectStorage.name : SPANS.metadataStorage.name;
  const requests = createCounter(meter, METRICS.storageRequests);
  const duration = createHistogram(meter, METRICS.storageDuration);
  const wrapped = new Set<PropertyKey>(methods);
  const proxy = new Proxy(target, {
    get(obj, prop, receiver) {
      const value: unknown = Reflect.get(obj, prop, receiver);
      if (typeof value !== 'function') return value;
      if (!wrapped.has(prop)) return (value as (...a: unknown[]) => unknown).bind(obj);
      const operation = String(prop);
      return (...args: unknown[]) =>
        tracer.startActiveSpan(spanName, { kind: SpanKind.CLIENT }, async (span) => {
          const started = performance.now();
          let outcome = 'ok';
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(obj, args);
          } catch (err) {
            outcome = errorCode(err);
            throw err;
          } finally {
            const attrs = {
              'woodpecker.store': kind,
              'woodpecker.operation': operation,
              'woodpecker.outcome': outcome,
            };
            requests.add(1, attrs);
            duration.record(performance.now() - started, attrs);
            if (span.isRecording()) {
              span.setAttributes(attrs);
              if (outcome !== 'ok')
                span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
            }
            span.end();
          }
        });
    },
  });
  instrumented.add(proxy);
  return proxy;
}

export function instrumentObjectStore(store: ObjectStore): ObjectStore {
  return instrument(store, 'object', ['put', 'get', 'head', 'list', 'deleteMany']);
}

/**
 * Counts, times and traces every get, range, txn and grantLease of a metadata store (watch
 * streams are not requests and pass through). Woodpecker wraps the store it is given; wrap the
 * store before handing it to both the WAL and other users (node, coordinator) to see their
 * requests too — a wrapped store is not wrapped again.
 */
export function instrumentMetadataStore(store: MetadataStore): MetadataStore {
  return instrument(store, 'metadata', ['get', 'range', 'txn', 'grantLease']);
}
