import { execFile } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

function protoCheck(protoDir: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(repoRoot, 'scripts/proto.mjs'), 'check', '--proto', protoDir],
      { cwd: repoRoot, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, output: stdout + stderr });
      },
    );
  });
}

describe('proto:check', () => {
  it('passes when the committed generated code matches proto/', async () => {
    const result = await protoCheck(join(repoRoot, 'proto'));
    expect(result.output).toContain('proto code is up to date');
    expect(result.code).toBe(0);
  });

  it('fails and names the stale file when a .proto changed without regenerating', async () => {
    await using dir = await makeTempDir('stale-proto');
    await cp(join(repoRoot, 'proto'), dir.path, { recursive: true });
    const file = join(dir.path, 'common.proto');
    const source = await readFile(file, 'utf8');
    const changed = source.replace(
      'uint64 entry_id = 2 [jstype = JS_NUMBER];',
      'uint64 entry_id = 2 [jstype = JS_NUMBER];\n  uint32 stale_field = 3;',
    );
    expect(changed).not.toBe(source);
    await writeFile(file, changed);

    const result = await protoCheck(dir.path);
    expect(result.code).toBe(1);
    expect(result.output).toContain('common.ts: differs');
    expect(result.output).toContain('npm run proto:gen');
  });
});
