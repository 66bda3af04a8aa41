import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { StreamingClient } from '@woodstream/client';
import { StreamingNode } from '@woodstream/streaming-node';
import { makeTempDir, waitFor } from '@woodstream/testing';
import { FileMetadataStore, Woodpecker } from '@woodstream/woodpecker';
import { describe, expect, it } from 'vitest';
import { startCoordinatorApp, type CoordinatorApp } from './coordinator-app.js';
import { createLogger } from './logger.js';

/**
 * A TCP balancer like a Kubernetes Service: each new connection goes to the next backend in
 * turn. Resolves with its address, the backend each connection went to, and a close function.
 */
async function roundRobinProxy(backends: string[]): Promise<{
  address: string;
  connections: string[];
  close(): Promise<void>;
}> {
  const connections: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const backend = backends[connections.length % backends.length] as string;
    connections.push(backend);
    const [host, port] = backend.split(':');
    const upstream = createConnection({ host, port: Number(port) });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no proxy address');
  return {
    address: `127.0.0.1:${address.port}`,
    connections,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const settings = {
  pchannelCount: 2,
  pchannelPrefix: 'wal',
  sessionTtlMs: 2_000,
  balanceIntervalMs: 200,
  moveCooldownMs: 0,
  maxMovesPerRound: 4,
  operationTimeoutMs: 10_000,
};

describe('a client behind a load-balanced coordinator address', () => {
  it('reaches the active coordinator even when its first connection lands on the standby', async () => {
    await using dir = await makeTempDir('standby-proxy');
    const metadata = await FileMetadataStore.open({});
    const logger = createLogger({ component: 'test', level: 'silent' });
    const wal = Woodpecker.open({
      metadata,
      storage: { mode: 'local', rootDir: join(dir.path, 'wal') },
    });
    const node = await StreamingNode.start(
      { sessionTtlMs: 2_000, timeTickIntervalMs: 50, drainTimeoutMs: 0 },
      { wal, metadata },
    );
    const apps: CoordinatorApp[] = [];
    let proxy: Awaited<ReturnType<typeof roundRobinProxy>> | undefined;
    let client: StreamingClient | undefined;
    try {
      const grpc = { host: '127.0.0.1', port: 0 };
      apps.push(await startCoordinatorApp(settings, grpc, logger, { metadata }));
      const [active] = apps;
      await waitFor(() => active?.coordinator.listChannels().every((c) => c.state === 'ASSIGNED'), {
        timeoutMs: 20_000,
        description: 'channels assigned by the active coordinator',
      });
      apps.push(await startCoordinatorApp(settings, grpc, logger, { metadata }));
      const standby = apps[1] as CoordinatorApp;
      expect(standby.coordinator.status().role).toBe('STANDBY');

      // The first connection goes to the standby, which refuses discovery streams.
      proxy = await roundRobinProxy([standby.address, (active as CoordinatorApp).address]);
      client = await StreamingClient.connect({
        coordinator: proxy.address,
        connectTimeoutMs: 15_000,
        minBackoffMs: 10,
        maxBackoffMs: 100,
      });
      const ack = await client.append({ vchannel: 'v', payload: new TextEncoder().encode('x') });
      expect(ack.timeTick).toBeGreaterThan(0n);
      expect(proxy.connections[0]).toBe(standby.address);
      expect(proxy.connections).toContain((active as CoordinatorApp).address);
    } finally {
      await client?.close();
      await proxy?.close();
      for (const app of apps.reverse()) await app.stop();
      await node.stop({ drain: false });
      await wal.close();
      await metadata.close();
    }
  });
});
