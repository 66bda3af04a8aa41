import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManagedProcess, makeTempDir } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';
import {
  ANY_STANDALONE_PORTS,
  jsonLines,
  produceArgs,
  repoRoot,
  spawnInstalledCli,
  tsx,
} from './cli.js';

/** The command `npm start` runs (package.json), with the paths made absolute for another cwd. */
function startCommand(): string[] {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
    scripts: { start: string };
  };
  const words = pkg.scripts.start.split(/\s+/);
  expect(words[0]).toBe('node');
  return words.slice(1).map((w) => (w === 'tsx' ? tsx : w.endsWith('.ts') ? join(repoRoot, w) : w));
}

describe('standalone', () => {
  it('npm start runs standalone; 1,000 messages produced with the installed CLI (npx woodstream) are consumed back, also after a SIGKILL and restart', async () => {
    await using dir = await makeTempDir('standalone');
    const dataDir = join(dir.path, 'data');
    const start = (): ManagedProcess =>
      ManagedProcess.spawn({
        name: 'standalone',
        command: process.execPath,
        args: [...startCommand(), '--dataDir', dataDir, ...ANY_STANDALONE_PORTS],
        cwd: dir.path,
      });
    let server = start();
    try {
      const running = await server.waitForOutput(/standalone is running: coordinator (\S+),/, {
        timeoutMs: 60_000,
      });
      const coordinator = running[1] as string;
      await server.waitForOutput(/woodstream consume --vchannel demo/, { timeoutMs: 10_000 });

      const acks = await jsonLines(
        spawnInstalledCli('produce', produceArgs('e2e', 1000, 32, coordinator), { cwd: dir.path }),
      );
      expect(acks).toHaveLength(1000);
      const ackedIds = acks.map((l) => (JSON.parse(l) as { messageId: string }).messageId);
      expect(new Set(ackedIds).size).toBe(1000);

      const consumeAll = async (
        address: string,
      ): Promise<{ messageId: string; properties: { seq: string } }[]> =>
        (
          await jsonLines(
            spawnInstalledCli(
              'consume',
              ['consume', '--vchannel', 'e2e', '--from', 'earliest', '--coordinator', address],
              { cwd: dir.path },
            ),
          )
        ).map((l) => JSON.parse(l) as { messageId: string; properties: { seq: string } });
      const first = await consumeAll(coordinator);
      expect(first.map((m) => m.messageId).sort()).toEqual([...ackedIds].sort());
      // One vchannel, one producer stream: delivered in the order produced.
      expect(first.map((m) => Number(m.properties.seq))).toEqual(first.map((_, i) => i));

      // Crash: no chance to flush or close anything.
      await server.stop({ signal: 'SIGKILL' });
      server = start();
      const again = await server.waitForOutput(/standalone is running: coordinator (\S+),/, {
        timeoutMs: 60_000,
      });
      const second = await consumeAll(again[1] as string);
      expect(second.map((m) => m.messageId)).toEqual(first.map((m) => m.messageId));

      const exit = await server.stop({ signal: 'SIGTERM', graceMs: 30_000 });
      expect(exit.code).toBe(0);
    } finally {
      await server.stop({ signal: 'SIGKILL' });
    }
  });
});
