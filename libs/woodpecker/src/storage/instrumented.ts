import { metrics } from '@opentelemetry/api';
import { errorCode } from '@woodstream/common';
import { WAL_METRICS } from '../log/telemetry.js';
import type { MetadataStore } from './metadata-store.js';
import type { ObjectStore } from './object-store.js';

type AsyncMethods<T> = {
  [K in keyof T]: T[K] extends (...args: never[]) => Promise<unknown> ? K : never;
}[keyof T];

/**
 * Wraps a port so that every request is counted and timed through the OpenTelemetry API
 * (`woodpecker.storage.requests`, `woodpecker.storage.duration`) with the store kind, the
 * operation and the outcome (`ok` or the error code). A no-op unless an SDK is registered.
 */
function instrument<T extends object>(
  target: T,
  kind: 'object' | 'metadata',
  methods: readonly AsyncMethods<T>[],
): T {
  const meter = metrics.getMeter('@woodstream/woodpecker');
  const requests = meter.createCounter(WAL_METRICS.storageRequests.name, {
    unit: WAL_METRICS.storageRequests.unit,
    description: 'Requests to object storage and the metadata store',
  });
  const duration = meter.createHistogram(WAL_METRICS.storageDuration.name, {
    unit: WAL_METRICS.storageDuration.unit,
    description: 'Latency of requests to object storage and the metadata store',
  });
  const wrapped = new Set<PropertyKey>(methods);
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const value: unknown = Reflect.get(obj, prop, receiver);
      if (typeof value !== 'function') return value;
      if (!wrapped.has(prop)) return (value as (...a: unknown[]) => unknown).bind(obj);
      return async (...args: unknown[]) => {
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
            'woodpecker.operation': String(prop),
            'woodpecker.outcome': outcome,
          };
          requests.add(1, attrs);
          duration.record(performance.now() - started, attrs);
        }
      };
    },
  });
}

export function instrumentObjectStore(store: ObjectStore): ObjectStore {
  return instrument(store, 'object', ['put', 'get', 'head', 'list', 'deleteMany']);
}

export function instrumentMetadataStore(store: MetadataStore): MetadataStore {
  return instrument(store, 'metadata', ['get', 'range', 'txn', 'grantLease']);
}
