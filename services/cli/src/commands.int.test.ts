import { join } from 'node:path';
import { Readable } from 'node:stream';
import { StreamingClient } from '@woodstream/client';
import {
  createLogger,
  StandaloneSchema,
  startStandalone,
  type StandaloneApp,
  type StandaloneConfig,
} from '@woodstream/runtime';
import { makeTempDir, type TempDir } from '@woodstream/testing';
import { Value } from '@sinclair/typebox/value';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, runCli } from './cli.js';

let dir: TempDir;
let app: StandaloneApp;

beforeAll(async () => {
  dir = await makeTempDir('cli-commands');
  const config = Value.Default(StandaloneSchema, {
    dataDir: join(dir.path, 'data'),
    coordinatorPort: 0,
    nodePort: 0,
    httpPort: 0,
    timeTickIntervalMs: 50,
    pchannelCount: 2,
  }) as StandaloneConfig;
  app = await startStandalone(config, createLogger({ component: 'test', level: 'silent' }));
});
afterAll(async () => {
  await app?.stop();
  await dir?.remove();
});

/** Runs `woodstream <args>` against the standalone app; its exit code and output lines. */
async function cli(
  args: string[],
  stdin?: string,
): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli([...args, '--coordinator', app.coordinatorAddress], {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    stdin: Readable.from(stdin === undefined ? [] : [stdin]),
    isTty: false,
    env: {},
  });
  return { code, out, err };
}

const lines = (out: string[]) => out.map((l) => JSON.parse(l) as Record<string, unknown>);

describe('woodstream produce and consume', () => {
  it('produces one message per stdin line and consumes them back as UTF-8, stopping when caught up even below --count', async () => {
    const produced = await cli(['produce', '--vchannel', 'lines'], 'first\nsecond\nthird\n');
    expect(produced.code).toBe(ExitCode.ok);
    const acks = lines(produced.out);
    expect(acks).toHaveLength(3);
    // Without --follow, a larger --count does not make it wait for messages that never come.
    const consumed = await cli(['consume', '--vchannel', 'lines', '--count', '10']);
    expect(consumed.code).toBe(ExitCode.ok);
    expect(lines(consumed.out)).toEqual(
      ['first', 'second', 'third'].map((payload, i) => ({
        vchannel: 'lines',
        messageId: acks[i]?.messageId,
        timeTick: acks[i]?.timeTick,
        payload,
        properties: {},
      })),
    );
  });

  it('prints payloads that are not UTF-8 as base64, and reads from a message id inclusively', async () => {
    const client = await StreamingClient.connect({ coordinator: app.coordinatorAddress });
    try {
      const binary = Uint8Array.from([0xff, 0xfe, 0x00, 0x80]);
      const [, b] = await client.appendBatch([
        { vchannel: 'bin', payload: binary },
        { vchannel: 'bin', payload: new TextEncoder().encode('text') },
      ]);
      const all = lines((await cli(['consume', '--vchannel', 'bin'])).out);
      expect(all[0]).toMatchObject({
        payload: Buffer.from(binary).toString('base64'),
        encoding: 'base64',
      });
      expect(all[1]).toMatchObject({ payload: 'text' });
      expect(all[1]).not.toHaveProperty('encoding');
      const id = `${b?.messageId.segmentId}:${b?.messageId.entryId}`;
      const fromB = lines((await cli(['consume', '--vchannel', 'bin', '--from', id])).out);
      expect(fromB.map((m) => m.messageId)).toEqual([id]);
    } finally {
      await client.close();
    }
  });

  it('follows from latest: only messages appended after it started, until --count', async () => {
    await cli(['produce', '--vchannel', 'live', '--count', '5', '--size', '8']);
    const following = cli([
      'consume',
      '--vchannel',
      'live',
      '--from',
      'latest',
      '--follow',
      '--count',
      '2',
    ]);
    // Appends until the follower has its two messages: it may start after the first ones.
    const client = await StreamingClient.connect({ coordinator: app.coordinatorAddress });
    let done = false;
    void following.then(() => (done = true));
    try {
      for (let i = 0; !done && i < 1000; i++) {
        await client.append({ vchannel: 'live', payload: new TextEncoder().encode(`new-${i}`) });
        await Promise.race([following, new Promise((r) => setImmediate(r))]);
      }
    } finally {
      await client.close();
    }
    const result = await following;
    expect(result.code).toBe(ExitCode.ok);
    const got = lines(result.out).map((m) => m.payload as string);
    expect(got).toHaveLength(2);
    for (const p of got) expect(p).toMatch(/^new-\d+$/);
    expect(Number(got[1]?.slice(4))).toBe(Number(got[0]?.slice(4)) + 1);
  });
});
