import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startHttpServer, type HttpLogger, type HttpServer } from '@woodstream/admin';
import { startTestCluster, WAIT } from '@woodstream/admin/testing';
import type { StreamingCoordinator } from '@woodstream/streaming-coordinator';
import type { StreamingNode } from '@woodstream/streaming-node';
import { freePort, makeTempDir, waitFor, type TempDir } from '@woodstream/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, runCli } from './cli.js';

const TOKEN = 'cli-test-token-5678';
const silent: HttpLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silent,
};

const cleanups: (() => Promise<void>)[] = [];
let dir: TempDir;
let coordinator: StreamingCoordinator;
let nodes: StreamingNode[];
let server: HttpServer;
let protectedServer: HttpServer;
let tokenFile: string;

beforeAll(async () => {
  try {
    const cluster = await startTestCluster();
    cleanups.push(() => cluster.stop());
    ({ coordinator, nodes } = cluster);
    await coordinator.setAllowRebalance(false);
    server = await startHttpServer({
      logger: silent,
      readiness: [],
      admin: { coordinator },
      host: '127.0.0.1',
      port: 0,
    });
    cleanups.push(() => server.stop());
    protectedServer = await startHttpServer({
      logger: silent,
      readiness: [],
      admin: { coordinator, token: TOKEN },
      host: '127.0.0.1',
      port: 0,
    });
    cleanups.push(() => protectedServer.stop());
    dir = await makeTempDir('cli-admin');
    cleanups.push(async () => {
      await dir[Symbol.asyncDispose]();
    });
    tokenFile = join(dir.path, 'token');
    await writeFile(tokenFile, `${TOKEN}\n`);
  } catch (err) {
    await stopAll();
    throw err;
  }
});

async function stopAll(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
}
afterAll(stopAll);

async function admin(
  argv: string[],
  env: Record<string, string> = { WOODSTREAM_ADMIN_URL: `http://${server.address}` },
): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(['admin', ...argv], {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    env,
  });
  return { code, out, err };
}

describe('woodstream admin against a real admin server', () => {
  it('shows the cluster as text and as JSON', async () => {
    const text = await admin(['cluster']);
    expect(text.code).toBe(ExitCode.ok);
    expect(text.out).toContain(`coordinator   ${coordinator.options.coordinatorId} (ACTIVE)`);
    expect(text.out).toContain('nodes         2 (2 healthy, 0 frozen, 0 stopping)');
    expect(text.out).toContain('channels      4 (4 ASSIGNED)');
    expect(text.out).toContain('rebalance     suspended');
    const json = await admin(['cluster', '--json']);
    expect(JSON.parse(json.out[0] ?? '')).toMatchObject({
      coordinator: { role: 'ACTIVE' },
      channels: { total: 4 },
    });
  });

  it('lists nodes and channels in aligned tables', async () => {
    const listed = await admin(['nodes']);
    expect(listed.code).toBe(ExitCode.ok);
    expect(listed.out[0]).toMatch(/^ID +ADDRESS +STATE +HEALTHY +LOAD +VCHANNELS +CHANNELS$/);
    for (const node of nodes) {
      expect(listed.out.some((l) => l.includes(node.address) && /\bactive +yes\b/.test(l))).toBe(
        true,
      );
    }
    // Every row starts its ADDRESS column at the same place.
    const column = listed.out[0]?.indexOf('ADDRESS');
    for (const line of listed.out.slice(1)) expect(line.indexOf('127.0.0.1')).toBe(column);
    const channels = await admin(['channels']);
    expect(channels.out[0]).toMatch(/^NAME +STATE +TERM +NODE +VCHANNELS +TASK +LAST ERROR$/);
    expect(channels.out.slice(1).map((l) => l.split(/ +/)[0])).toEqual([
      'wal-0000',
      'wal-0001',
      'wal-0002',
      'wal-0003',
    ]);
  });

  it('moves a channel and waits until it is there', async () => {
    const before = coordinator.listChannels().find((c) => c.name === 'wal-0002')!;
    const target = nodes.find((n) => n.serverId !== before.nodeId)!.serverId;
    const moved = await admin(['move', 'wal-0002', String(target), '--wait']);
    expect(moved.err).toEqual([]);
    expect(moved.code).toBe(ExitCode.ok);
    expect(moved.out[0]).toMatch(
      new RegExp(`^wal-0002 is on node ${target} at term ${before.term + 1} \\(operation .+\\)$`),
    );
    expect(coordinator.listChannels().find((c) => c.name === 'wal-0002')).toMatchObject({
      state: 'ASSIGNED',
      nodeId: target,
    });
    const unknown = await admin(['move', 'wal-0002', '987654']);
    expect(unknown.code).toBe(ExitCode.failure);
    expect(unknown.err[0]).toBe(
      'woodstream admin: no streaming node 987654 is registered [NODE_NOT_FOUND]',
    );
  });

  it('freezes and unfreezes a node', async () => {
    const id = nodes[0]!.serverId;
    const frozen = await admin(['freeze', String(id)]);
    expect(frozen.code).toBe(ExitCode.ok);
    expect(frozen.out[0]).toMatch(new RegExp(`^node ${id} frozen: it gets no channels`));
    await waitFor(
      () => coordinator.listNodes().find((n) => n.serverId === id)?.channels.length === 0,
      WAIT,
    );
    expect((await admin(['balance', 'status'])).out).toEqual([
      `rebalance suspended; frozen nodes: ${id}`,
    ]);
    const active = await admin(['unfreeze', String(id)]);
    expect(active.out).toEqual([`node ${id} active: it may get channels again`]);
    expect(coordinator.currentSettings().frozenNodeIds).toEqual([]);
  });

  it('suspends, resumes and triggers balancing', async () => {
    expect((await admin(['balance', 'resume'])).out).toEqual(['rebalance on; frozen nodes: none']);
    expect(coordinator.currentSettings().allowRebalance).toBe(true);
    expect((await admin(['balance', 'trigger'])).out).toEqual(['balance round triggered']);
    const suspended = await admin(['balance', 'suspend', '--json']);
    expect(JSON.parse(suspended.out[0] ?? '')).toEqual({
      allowRebalance: false,
      frozenNodeIds: [],
    });
  });

  it('says which admin URL it could not reach and how to set another', async () => {
    const port = await freePort();
    const result = await admin(['nodes', '--admin-url', `http://127.0.0.1:${port}`], {});
    expect(result.code).toBe(ExitCode.failure);
    expect(result.err[0]).toContain(`cannot reach the admin API at http://127.0.0.1:${port}`);
    expect(result.err[0]).toContain('ECONNREFUSED');
    expect(result.err[0]).toContain('--admin-url http://HOST:PORT or WOODSTREAM_ADMIN_URL');
  });

  it('tells how to pass a token (401), names a wrong one (403), and works with the right one', async () => {
    const url = `http://${protectedServer.address}`;
    const missing = await admin(['balance', 'suspend', '--admin-url', url], {});
    expect(missing.code).toBe(ExitCode.failure);
    expect(missing.err[0]).toContain('pass --token-file PATH');
    expect(missing.err[0]).toContain('WOODSTREAM_ADMIN_TOKEN_FILE');
    const wrongFile = join(dir.path, 'wrong-token');
    await writeFile(wrongFile, 'not-the-token');
    const wrong = await admin([
      'balance',
      'suspend',
      '--admin-url',
      url,
      '--token-file',
      wrongFile,
    ]);
    expect(wrong.err[0]).toContain(`refused the token from ${wrongFile}`);
    const right = await admin(['balance', 'suspend'], {
      WOODSTREAM_ADMIN_URL: url,
      WOODSTREAM_ADMIN_TOKEN_FILE: tokenFile,
    });
    expect(right.err).toEqual([]);
    expect(right.code).toBe(ExitCode.ok);
    // Reads stay open without protectReads.
    expect((await admin(['nodes', '--admin-url', url], {})).code).toBe(ExitCode.ok);
    const noFile = await admin(['nodes', '--token-file', join(dir.path, 'nope')]);
    expect(noFile.err[0]).toContain(`cannot read the token file ${join(dir.path, 'nope')}`);
  });
});
