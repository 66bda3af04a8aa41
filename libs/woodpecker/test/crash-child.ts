// Parent side of the crash tests: runs test/crash-writer.ts in a child process and kills it.
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@woodstream/testing';
import type { LogPosition } from '@woodstream/woodpecker';
import { expect } from 'vitest';
import type { CrashWriterConfig } from './crash-writer.js';

const childScript = fileURLToPath(new URL('./crash-writer.ts', import.meta.url));
const tsx = createRequire(import.meta.url).resolve('tsx');

/** Runs the child writer, SIGKILLs it after `minAcks` acks, and returns what it acknowledged. */
export async function crashWriter(
  config: CrashWriterConfig,
  minAcks: number,
): Promise<Map<number, LogPosition>> {
  const acks = new Map<number, LogPosition>();
  const errors: string[] = [];
  let output = '';
  const child = fork(childScript, [JSON.stringify(config)], {
    execArgv: ['--conditions=@woodstream/source', '--import', tsx],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  child.on('message', (m: { type: string; n: number; position: LogPosition; message: string }) => {
    if (m.type === 'ack') acks.set(m.n, m.position);
    if (m.type === 'error') errors.push(m.message);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitFor(
      () => {
        if (child.exitCode !== null)
          throw new Error(`child exited early (${child.exitCode}): ${output}`);
        return acks.size >= minAcks;
      },
      { timeoutMs: 60_000, description: `${minAcks} acks from the child writer` },
    );
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
  expect(errors).toEqual([]);
  return acks;
}
