import { describe, expect, it } from 'vitest';
import { parseArgs, parseMessageId } from './args.js';
import { ExitCode, runCli } from './cli.js';

async function run(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

describe('woodstream CLI', () => {
  it('prints usage and succeeds for help', async () => {
    const { code, out } = await run('help');
    expect(code).toBe(ExitCode.ok);
    expect(out.join('\n')).toContain('run standalone');
  });

  it('rejects an unknown run target with a usage error that names the choices', async () => {
    const { code, err } = await run('run', 'everything');
    expect(code).toBe(ExitCode.usage);
    expect(err[0]).toContain('standalone, coordinator, node');
  });

  it('rejects an unknown command with a usage error', async () => {
    const { code, err } = await run('frobnicate');
    expect(code).toBe(ExitCode.usage);
    expect(err.join('\n')).toContain("unknown command 'frobnicate'");
  });

  it('requires --vchannel for produce and consume', async () => {
    for (const command of ['produce', 'consume']) {
      const { code, err } = await run(command);
      expect(code).toBe(ExitCode.usage);
      expect(err[0]).toBe('--vchannel is required');
    }
  });

  it('validates numeric options and message ids before connecting', async () => {
    expect((await run('produce', '--vchannel', 'v', '--count', 'many')).err[0]).toMatch(
      /--count must be an integer/,
    );
    expect((await run('consume', '--vchannel', 'v', '--from', 'yesterday')).err[0]).toMatch(
      /invalid message id 'yesterday'/,
    );
  });

  it('rejects unknown options and stray words before connecting, naming the known options', async () => {
    const typo = await run('consume', '--vchannel', 'v', '--cout', '5');
    expect(typo.code).toBe(ExitCode.usage);
    expect(typo.err[0]).toMatch(/unknown option --cout \(options: .*--count/);
    const stray = await run('produce', '--vchannel', 'v', 'extra');
    expect(stray.code).toBe(ExitCode.usage);
    expect(stray.err[0]).toMatch(/unexpected argument 'extra'/);
    expect((await run('status', '--verbose')).err[0]).toMatch(/unknown option --verbose/);
  });

  it('parses options and message ids', () => {
    expect(parseArgs(['--vchannel', 'v', '--follow', '--count=3'])).toEqual({
      positional: [],
      options: new Map<string, string | true>([
        ['vchannel', 'v'],
        ['follow', true],
        ['count', '3'],
      ]),
    });
    expect(parseMessageId('2:41')).toEqual({ segmentId: 2, entryId: 41 });
  });
});
