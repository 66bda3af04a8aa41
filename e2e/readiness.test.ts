import { freePort, startEtcd, uniqueName, waitFor } from '@woodstream/testing';
import { describe, expect, it, onTestFailed } from 'vitest';
import { spawnCli } from './cli.js';

async function probe(url: string): Promise<{ status: number; body: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: await res.text() };
  } catch (err) {
    return { status: 0, body: String(err) };
  }
}

describe('readiness', () => {
  it('a coordinator turns unready while its etcd is down and ready again when etcd returns; /healthz stays up', async () => {
    // Its own etcd: the outage must not touch the servers other tests share.
    const etcd = await startEtcd();
    const httpPort = await freePort();
    const coordinator = spawnCli('coordinator', [
      'run',
      'coordinator',
      '--grpc.port=0',
      `--http.port=${httpPort}`,
      '--sessionTtlMs=2000',
      '--metadata.kind=etcd',
      `--metadata.etcdEndpoints=${etcd.endpoint}`,
      `--metadata.rootPrefix=/${uniqueName('ready')}/`,
      '--metadata.requestTimeoutMs=1000',
    ]);
    onTestFailed(() => console.error(coordinator.output().split('\n').slice(-40).join('\n')));
    try {
      await coordinator.waitForOutput(/"msg":"ready"/, { timeoutMs: 60_000 });
      const base = `http://127.0.0.1:${httpPort}`;
      const readyz = (): Promise<{ status: number; body: string }> => probe(`${base}/readyz`);

      await waitFor(async () => (await readyz()).status === 200, {
        timeoutMs: 30_000,
        description: '/readyz 200 with etcd up',
      });

      await etcd.pause();
      const down = await waitFor(
        async () => {
          const r = await readyz();
          return r.status === 503 ? r : undefined;
        },
        { timeoutMs: 30_000, description: '/readyz 503 with etcd down' },
      );
      expect(down.body).toContain('metadata');
      expect((await probe(`${base}/healthz`)).status).toBe(200);

      await etcd.restart();
      await waitFor(async () => (await readyz()).status === 200, {
        timeoutMs: 60_000,
        description: '/readyz 200 after etcd returned',
      });
      expect(coordinator.isRunning).toBe(true);
    } finally {
      await coordinator.stop({ graceMs: 10_000 });
      await etcd.stop();
    }
  });
});
