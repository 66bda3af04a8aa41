import { fileURLToPath } from 'node:url';
import { ManagedProcess, makeTempDir, spawnService } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

describe('starting Woodstream from a checkout', () => {
  it('`npm start` fails with a clear message while the service is not built', async () => {
    await using cwd = await makeTempDir('npm-start');
    const proc = ManagedProcess.spawn({
      name: 'npm-start',
      command: 'npm',
      args: ['start', '--prefix', repoRoot, '--silent'],
      cwd: cwd.path,
    });
    const exit = await proc.exited;
    expect(exit.code).toBe(1);
    expect(proc.output()).toMatch(/not part of this build yet; nothing was started/);
  });

  it('the CLI process prints usage and exits 0 for help', async () => {
    const proc = spawnService({
      name: 'woodstream-help',
      entry: `${repoRoot}services/cli/src/main.ts`,
      args: ['help'],
    });
    expect((await proc.exited).code).toBe(0);
    expect(proc.output()).toContain('usage: woodstream');
  });
});
