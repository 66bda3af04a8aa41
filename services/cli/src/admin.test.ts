import { describe, expect, it } from 'vitest';
import { formatTable } from './admin.js';
import { ExitCode, runCli } from './cli.js';

async function run(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

describe('woodstream admin (no server)', () => {
  it('aligns table columns to the widest cell', () => {
    expect(
      formatTable(
        ['ID', 'ADDRESS', 'CHANNELS'],
        [
          ['1', '127.0.0.1:40001', 'wal-0000 wal-0001'],
          ['12', 'n:1', ''],
        ],
      ),
    ).toEqual([
      'ID  ADDRESS          CHANNELS',
      '1   127.0.0.1:40001  wal-0000 wal-0001',
      '12  n:1',
    ]);
  });

  it('prints its usage for help and a usage error without a command', async () => {
    const help = await run('admin', 'help');
    expect(help.code).toBe(ExitCode.ok);
    expect(help.out.join('\n')).toContain('move <channel> <nodeId>');
    expect((await run('admin')).code).toBe(ExitCode.usage);
  });

  it('rejects bad arguments before calling the API', async () => {
    const badNode = await run('admin', 'freeze', 'node-2');
    expect(badNode.code).toBe(ExitCode.usage);
    expect(badNode.err[0]).toBe("woodstream admin freeze: node id must be a number, got 'node-2'");
    const noNode = await run('admin', 'move', 'wal-0001');
    expect(noNode.err[0]).toBe('woodstream admin move: give a node id');
    const balance = await run('admin', 'balance', 'off');
    expect(balance.err[0]).toContain('expected status, suspend, resume or trigger');
    const url = await run('admin', 'nodes', '--admin-url', 'localhost:9091');
    expect(url.err[0]).toBe("--admin-url must look like http://HOST:PORT, got 'localhost:9091'");
    const unknown = await run('admin', 'reboot');
    expect(unknown.err[0]).toContain("unknown command 'reboot'");
  });
});
