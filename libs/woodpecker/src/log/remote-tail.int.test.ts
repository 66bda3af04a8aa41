import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { createTestBucket, harness, makeTempDir, uniqueName, waitFor } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';
import type { CrashWriterConfig } from '../../test/crash-writer.js';
import { s3BucketConfig } from '../../test/s3-bucket-config.js';
import { EtcdMetadataStore } from '../storage/etcd-metadata-store.js';
import { S3ObjectStore } from '../storage/s3-object-store.js';
import { Woodpecker, type StorageOptions } from '../woodpecker.js';
import type { LogPosition } from './position.js';
import { countCalls, expectNoRequestsWhileIdle } from './wal-suite.js';

const childScript = fileURLToPath(new URL('../../test/crash-writer.ts', import.meta.url));
const tsx = createRequire(import.meta.url).resolve('tsx');
const dec = new TextDecoder();
const BURST = 20;

/**
 * A writer in a child process (its own etcd client) appends bursts; a reader here, on another
 * etcd client, tails it: woken by push after each burst, silent while the writer is idle.
 */
async function tailsChildWriter(config: CrashWriterConfig, storage: StorageOptions) {
  const { etcd } = config;
  if (etcd === undefined) throw new Error('needs etcd');
  const raw = await EtcdMetadataStore.open({
    endpoints: [etcd.endpoint],
    rootPrefix: etcd.rootPrefix,
  });
  const metadata = countCalls(raw);
  const objects = storage.mode === 'object' ? countCalls(storage.objectStore) : undefined;
  const requests = (): number => metadata.total() + (objects?.total() ?? 0);
  const wp = Woodpecker.open({
    metadata: metadata.proxy,
    storage:
      objects === undefined || storage.mode !== 'object'
        ? storage
        : { ...storage, objectStore: objects.proxy },
  });
  const log = await wp.createLog(config.logName);
  const acks = new Map<number, LogPosition>();
  let idleAt = 0;
  let output = '';
  const child = fork(childScript, [JSON.stringify({ ...config, burst: BURST })], {
    execArgv: ['--conditions=@woodstream/source', '--import', tsx],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  child.on('message', (m: { type: string; n: number; position: LogPosition }) => {
    if (m.type === 'ack') acks.set(m.n, m.position);
    if (m.type === 'idle') idleAt = m.n;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const reader = await log.openReader({ from: 'earliest' });
    const readUpTo = async (from: number, to: number) => {
      for (let n = from; n < to; n++) {
        const entry = await reader.next();
        expect(dec.decode(entry?.payload)).toBe(`e${n}`);
        // Acked before the reader could see it, at the same position.
        await waitFor(() => acks.has(n), { timeoutMs: 5_000 });
        expect(entry?.position).toEqual(acks.get(n));
      }
    };
    await readUpTo(0, BURST);
    await waitFor(() => idleAt === BURST, { timeoutMs: 10_000, description: 'the child to idle' });
    const parked = reader.next();
    // Let the last wake-ups settle, then nothing may happen while the writer is idle.
    await expectNoRequestsWhileIdle(requests, {
      idleMs: 2_000,
      settle: { timeoutMs: 10_000, intervalMs: 300 },
    });
    const sentAt = performance.now();
    child.send({ type: 'more' });
    const first = await parked;
    expect(dec.decode(first?.payload)).toBe(`e${BURST}`);
    // Pushed: far below any polling interval worth having.
    expect(performance.now() - sentAt).toBeLessThan(2_000);
    await readUpTo(BURST + 1, 2 * BURST);
  } catch (err) {
    throw new Error(`${(err as Error).message}\nchild output: ${output}`, { cause: err });
  } finally {
    child.kill('SIGKILL');
    await exited;
    await wp.close();
    await raw.close();
  }
}

function etcdConfig(): NonNullable<CrashWriterConfig['etcd']> {
  return { endpoint: harness().etcdEndpoint, rootPrefix: `/${uniqueName('tail')}/` };
}

describe('remote tail reader', () => {
  it('is pushed by a writer in another process (local files, etcd)', async () => {
    await using dir = await makeTempDir('tail-local');
    await tailsChildWriter(
      { logName: 'tail', etcd: etcdConfig(), rootDir: dir.path },
      { mode: 'local', rootDir: dir.path },
    );
  });

  for (const server of ['s3rver', 'radosgw'] as const) {
    it(`is pushed by a writer in another process (${server}, etcd)`, async () => {
      const s3 = harness()[server];
      await using bucket = await createTestBucket(s3, `tail-${server}`);
      const s3Config = s3BucketConfig(s3, bucket.name);
      const objectStore = await S3ObjectStore.open(s3Config);
      try {
        await tailsChildWriter(
          { logName: 'tail', etcd: etcdConfig(), s3: s3Config },
          { mode: 'object', objectStore },
        );
      } finally {
        await objectStore.close();
      }
    });
  }
});
