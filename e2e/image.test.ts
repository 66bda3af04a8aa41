// The container image (docker/Dockerfile): built with podman from a local base image
// (scripts/image.mjs: no registry needed), run as `woodstream run standalone`, used from the
// host through the published ports with the CLI, and stopped with SIGTERM.
import { join } from 'node:path';
import { freePort, ManagedProcess, runCommand, waitFor } from '@woodstream/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { consumeArgs, jsonLines, produceArgs, repoRoot, spawnCli } from './cli.js';

const imageScript = join(repoRoot, 'scripts', 'image.mjs');
const TAG = 'localhost/woodstream:e2e';

let podmanArgs: string[] = [];
let globalArgs: string[] = [];

beforeAll(async () => {
  const { stdout } = await runCommand(process.execPath, [imageScript, 'podman-args'], {
    timeoutMs: 30_000,
  });
  podmanArgs = stdout.trim().split('\n');
  globalArgs = podmanArgs.slice(0, podmanArgs.indexOf('--ulimit'));
  // The first build makes the base image (debootstrap) and compiles everything: minutes.
  await runCommand(process.execPath, [imageScript, 'build', '--tag', TAG], {
    timeoutMs: 900_000,
  });
}, 900_000);

const podman = (args: string[], timeoutMs = 60_000) =>
  runCommand('podman', [...globalArgs, ...args], { timeoutMs });

async function cli(args: string[]): Promise<string[]> {
  const proc = spawnCli(args[0] ?? 'cli', args, { cwd: repoRoot });
  try {
    return await jsonLines(proc);
  } finally {
    await proc.stop();
  }
}

describe('container image', () => {
  it('is built for a non-root user with the woodstream entrypoint and a healthcheck', async () => {
    const { stdout } = await podman(['image', 'inspect', TAG]);
    const [image] = JSON.parse(stdout) as {
      Config: { User: string; Entrypoint: string[]; Cmd: string[]; StopSignal?: string };
      Size: number;
      Healthcheck?: { Test: string[] };
    }[];
    expect(image?.Config.User).toBe('10001:10001');
    expect(image?.Config.Entrypoint).toEqual(['woodstream']);
    expect(image?.Config.Cmd).toEqual(['run', 'standalone']);
    expect(image?.Healthcheck?.Test.join(' ')).toContain('healthcheck.mjs');
    console.log(`image ${TAG}: ${Math.round((image?.Size ?? 0) / 1e6)} MB`);
  });

  it('runs standalone: produce and consume through the published ports, healthy, SIGTERM exits 0', async () => {
    // The node announces host:port to clients, so both gRPC ports are published with the same
    // numbers inside and out; 0.0.0.0:port reaches the published port on this host.
    const [grpcPort, nodePort, httpPort] = [await freePort(), await freePort(), await freePort()];
    const name = `woodstream-e2e-${process.pid}-${Date.now()}`;
    const container = ManagedProcess.spawn({
      name: 'container',
      command: 'podman',
      args: [
        ...globalArgs,
        'run',
        '--rm',
        '--name',
        name,
        ...podmanArgs.slice(globalArgs.length),
        '-p',
        `127.0.0.1:${grpcPort}:${grpcPort}`,
        '-p',
        `127.0.0.1:${nodePort}:${nodePort}`,
        '-p',
        `127.0.0.1:${httpPort}:9091`,
        TAG,
        'run',
        'standalone',
        `--coordinatorPort=${grpcPort}`,
        `--nodePort=${nodePort}`,
      ],
    });
    try {
      await container.waitForOutput(/standalone is running/, { timeoutMs: 60_000 });
      await waitFor(
        async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status === 200,
        { timeoutMs: 30_000, description: '/readyz through the published port' },
      );
      await podman(['healthcheck', 'run', name]);

      const coordinator = `127.0.0.1:${grpcPort}`;
      const count = 200;
      const acks = await cli(produceArgs('image-e2e', count, 24, coordinator));
      expect(acks).toHaveLength(count);
      const consumed = await cli(consumeArgs('image-e2e', count, coordinator));
      const ids = (lines: string[]) =>
        lines.map((l) => (JSON.parse(l) as { messageId: string }).messageId);
      expect(ids(consumed)).toEqual(ids(acks));
      const seqs = consumed.map(
        (l) => (JSON.parse(l) as { properties: { seq: string } }).properties.seq,
      );
      expect(seqs).toEqual(Array.from({ length: count }, (_, i) => String(i)));

      await podman(['kill', '--signal', 'SIGTERM', name]);
      await waitFor(() => !container.isRunning, {
        timeoutMs: 30_000,
        description: 'the container to exit after SIGTERM',
      });
      const exit = await container.exited;
      expect(exit.code, container.output().split('\n').slice(-20).join('\n')).toBe(0);
      expect(container.output()).toMatch(/"signal":"SIGTERM"/);
      expect(container.output()).toMatch(/"msg":"stopped"/);
    } finally {
      await container.stop({ graceMs: 30_000 });
      await podman(['rm', '--force', '--ignore', name]).catch(() => undefined);
    }
  });
});
