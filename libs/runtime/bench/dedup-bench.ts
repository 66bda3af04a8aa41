// `npm run bench:dedup` — what idempotent produce costs a streaming node's write path. A
// channel WAL (local mode, direct I/O, in this process, no network) takes frames of 64 x 1 KiB
// messages, 32 frames in flight, for a few seconds: once from an anonymous producer (no stamp,
// no dedup memory: the raw limit of this path) and once from an identified one (sequenced
// messages: stamped, looked up and remembered), alternately, three rounds each in fresh
// processes. Prints CPU µs per message and throughput, best of the rounds, and their ratio.
// Options: --seconds=<n> (default 3).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChannelWal } from '@woodstream/streaming-node';
import { FileMetadataStore, Woodpecker } from '@woodstream/woodpecker';

const seconds = Number(
  process.argv.find((a) => a.startsWith('--seconds='))?.slice('--seconds='.length) ?? 3,
);
const FRAME = 64;
const WINDOW = 32;
const progress = (msg: string): void => void process.stderr.write(`[bench:dedup] ${msg}\n`);

/** One measured run in this process: `identified` or not. Prints one JSON line. */
async function child(identified: boolean): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-dedup-'));
  const metadata = await FileMetadataStore.open({ path: join(dir, 'meta.log') });
  const wal = Woodpecker.open({
    metadata,
    storage: { mode: 'local', rootDir: join(dir, 'wal') },
    limits: { maxBlockBytes: 1024 * 1024, maxInflightBytes: 256 * 1024 * 1024 },
  });
  try {
    const channel = await ChannelWal.open(wal, metadata, 'wal-0000', 1, {
      maxMessageBytes: 4 * 1024 * 1024,
      timeTickIntervalMs: 200,
      maxVChannelsPerPChannel: 16,
    });
    await channel.append('bench', new Uint8Array(1), {});
    const producer = identified ? 'a1b2c3d4e5f60718' : undefined;
    let sequence = 1;
    const frame = () =>
      Array.from({ length: FRAME }, () => ({
        vchannel: 'bench',
        payload: Buffer.alloc(1024, 3),
        properties: {},
        sequence: identified ? sequence++ : 0,
      }));
    let done = 0;
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    // Bounded: WINDOW frames in flight, for `seconds`.
    await new Promise<void>((resolve, reject) => {
      let inflight = 0;
      let stopping = false;
      const launch = (): void => {
        while (!stopping && inflight < WINDOW) {
          inflight++;
          const appended = channel.appendBatch(frame(), producer);
          if (appended === undefined) {
            reject(new Error('a frame left the batch path'));
            return;
          }
          appended.then((results) => {
            done += results.length;
            inflight--;
            if (performance.now() - start > seconds * 1000) stopping = true;
            if (!stopping) launch();
            else if (inflight === 0) resolve();
          }, reject);
        }
      };
      launch();
    });
    const cpu = process.cpuUsage(cpu0);
    const elapsed = (performance.now() - start) / 1000;
    await channel.close();
    /* eslint-disable-next-line no-console */
    console.log(
      JSON.stringify({ perSec: done / elapsed, cpuUsPerMessage: (cpu.user + cpu.system) / done }),
    );
  } finally {
    await wal.close();
    await metadata.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Run {
  perSec: number;
  cpuUsPerMessage: number;
}

function measure(identified: boolean): Run {
  const out = spawnSync(
    process.execPath,
    [
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      identified ? '--child=identified' : '--child=anonymous',
      `--seconds=${seconds}`,
    ],
    { encoding: 'utf8' },
  );
  if (out.status !== 0) throw new Error(`bench child failed (${out.status}): ${out.stderr}`);
  const line = out.stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(line) as Run;
}

const role = process.argv.find((a) => a.startsWith('--child='))?.slice('--child='.length);
if (role !== undefined) {
  await child(role === 'identified');
} else {
  const best = { anonymous: [] as Run[], identified: [] as Run[] };
  for (let round = 1; round <= 3; round++) {
    progress(`round ${round}/3: anonymous producer, then identified`);
    best.anonymous.push(measure(false));
    best.identified.push(measure(true));
  }
  const pick = (runs: Run[]): Run =>
    runs.reduce((a, b) => (b.cpuUsPerMessage < a.cpuUsPerMessage ? b : a));
  const raw = pick(best.anonymous);
  const ours = pick(best.identified);
  const fmt = (n: number, d = 2): string => n.toFixed(d);
  /* eslint-disable no-console */
  console.log('measure                                 | identified | anonymous (raw) | ratio');
  console.log('----------------------------------------|------------|-----------------|------');
  console.log(
    `node write path, CPU per 1 KiB message (µs) | ${fmt(ours.cpuUsPerMessage)} | ${fmt(raw.cpuUsPerMessage)} | ${fmt(ours.cpuUsPerMessage / raw.cpuUsPerMessage)}`,
  );
  console.log(
    `node write path, messages/s              | ${fmt(ours.perSec, 0)} | ${fmt(raw.perSec, 0)} | ${fmt(ours.perSec / raw.perSec)}`,
  );
}
