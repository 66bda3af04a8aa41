import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { makeTempDir } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './index.js';

const schema = Type.Object(
  {
    grpc: Type.Object(
      {
        host: Type.String({ default: '127.0.0.1' }),
        port: Type.Integer({ default: 7000, minimum: 0, maximum: 65535 }),
      },
      { default: {}, additionalProperties: false },
    ),
    sessionTtlMs: Type.Integer({ default: 10000, minimum: 1000 }),
  },
  { additionalProperties: false },
);

describe('loadConfig with a file', () => {
  it('layers file < env < overrides and keeps defaults for what the file leaves out', async () => {
    await using dir = await makeTempDir('config');
    const file = join(dir.path, 'node.json');
    await writeFile(file, JSON.stringify({ grpc: { port: 7100 }, sessionTtlMs: 3000 }));
    const fromFile = await loadConfig(schema, { file });
    expect(fromFile).toEqual({ grpc: { host: '127.0.0.1', port: 7100 }, sessionTtlMs: 3000 });
    const layered = await loadConfig(schema, {
      file,
      env: { X_SESSION_TTL_MS: '4000' },
      envPrefix: 'X',
      overrides: { 'grpc.port': '7200' },
    });
    expect(layered).toEqual({ grpc: { host: '127.0.0.1', port: 7200 }, sessionTtlMs: 4000 });
  });

  it('rejects unknown keys in the file and an unreadable or malformed file, naming the file', async () => {
    await using dir = await makeTempDir('config');
    const unknown = join(dir.path, 'unknown.json');
    await writeFile(unknown, JSON.stringify({ grpc: { port: 1, colour: 'red' }, extra: true }));
    const err = await loadConfig(schema, { file: unknown }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.join('\n')).toMatch(/colour|extra/);
    const broken = join(dir.path, 'broken.json');
    await writeFile(broken, '{ not json');
    await expect(loadConfig(schema, { file: broken })).rejects.toThrow(/broken\.json/);
    await expect(loadConfig(schema, { file: join(dir.path, 'missing.json') })).rejects.toThrow(
      /missing\.json/,
    );
  });
});
