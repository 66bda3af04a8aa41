import { readFile } from 'node:fs/promises';
import { startHttpServer, type MetricsSource, type ReadinessCheck } from '@woodstream/admin';
import { ConfigError } from '@woodstream/config';
import { streamingKeys } from '@woodstream/streaming';
import type { StreamingCoordinator } from '@woodstream/streaming-coordinator';
import type { StreamingNode } from '@woodstream/streaming-node';
import type { MetadataStore } from '@woodstream/woodpecker';
import type { Logger } from './logger.js';

/** Ready only while the metadata store answers a read (etcd reachable, embedded file open). */
export function metadataReadiness(metadata: MetadataStore): ReadinessCheck {
  return {
    name: 'metadata',
    async check(signal) {
      await metadata.get(streamingKeys.cluster, { signal });
    },
  };
}

/** Ready while registered, not stopping, and every channel asked of the node is open. */
export function nodeReadiness(node: StreamingNode): ReadinessCheck {
  return {
    name: 'node',
    check() {
      const r = node.readiness();
      if (r.isStopping) return Promise.reject(new Error('the node is stopping'));
      if (!r.isRegistered) return Promise.reject(new Error('the node session is not registered'));
      if (r.opening.length > 0) {
        return Promise.reject(new Error(`channels still opening: ${r.opening.join(', ')}`));
      }
      return Promise.resolve();
    },
  };
}

/** Ready while the coordinator is active or a standby that can take over; not once stopped. */
export function coordinatorReadiness(coordinator: StreamingCoordinator): ReadinessCheck {
  return {
    name: 'coordinator',
    check() {
      const { role } = coordinator.status();
      return role === 'STOPPED'
        ? Promise.reject(new Error('the coordinator has stopped'))
        : Promise.resolve();
    },
  };
}

/**
 * Reads the admin token from `path` (empty path: no token). A file that is empty or unreadable
 * is a configuration error: silently running an unprotected admin API would be worse.
 */
export async function readAdminToken(
  path: string,
  protectReads: boolean,
): Promise<string | undefined> {
  if (path === '') {
    if (protectReads) {
      throw new ConfigError([
        'adminProtectReads: needs adminTokenFile (there is no token to check)',
      ]);
    }
    return undefined;
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError([
      `adminTokenFile: cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`,
    ]);
  }
  const token = text.trim();
  if (token === '') throw new ConfigError([`adminTokenFile: ${path} is empty`]);
  return token;
}

export interface ProcessHttpOptions {
  host: string;
  port: number;
  logger: Logger;
  readiness: readonly ReadinessCheck[];
  metrics?: MetricsSource;
  admin?: { coordinator: StreamingCoordinator; token?: string; protectReads: boolean };
}

/**
 * Wraps a started app with the process's HTTP server. The server is stopped after the app,
 * so /healthz keeps answering (and /readyz says why it is not ready) while the app drains.
 */
export async function withHttpServer<A extends { stop(): Promise<void> }>(
  app: A,
  options: ProcessHttpOptions,
): Promise<{ app: A; httpAddress: string; stop(): Promise<void> }> {
  let http: Awaited<ReturnType<typeof startHttpServer>>;
  try {
    http = await startHttpServer({
      host: options.host,
      port: options.port,
      logger: options.logger.child({ component: 'http' }),
      readiness: options.readiness,
      ...(options.metrics ? { metrics: options.metrics } : {}),
      ...(options.admin
        ? {
            admin: {
              coordinator: options.admin.coordinator,
              ...(options.admin.token !== undefined ? { token: options.admin.token } : {}),
              protectReads: options.admin.protectReads,
            },
          }
        : {}),
    });
  } catch (err) {
    await app.stop().catch(() => undefined);
    throw err;
  }
  return {
    app,
    httpAddress: http.address,
    async stop() {
      try {
        await app.stop();
      } finally {
        await http.stop();
      }
    },
  };
}
