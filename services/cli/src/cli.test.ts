import { describe, expect, it } from 'vitest';
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

  it('refuses to pretend that the standalone service runs', async () => {
    const { code, out, err } = await run('run', 'standalone');
    expect(code).toBe(ExitCode.failure);
    expect(out).toEqual([]);
    expect(err.join('\n')).toMatch(/not part of this build yet; nothing was started/);
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
});
