import { spawnSync } from 'node:child_process';
import { appendFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  freePort,
  harness,
  makeTempDir,
  startEtcd,
  uniqueName,
  waitFor,
  type TempDir,
} from '@woodstream/testing';
import { Etcd3 } from 'etcd3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetadataUnavailableError } from '../errors.js';
import { describeMetadataStoreContract } from '../testing/metadata-store-contract.js';
import { EtcdMetadataStore } from './etcd-metadata-store.js';
import { FileMetadataStore } from './file-metadata-store.js';
import type { KeyValue, MetadataStore, TxnOp, WatchEvent } from './metadata-store.js';

const WAIT_MS = 10_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function put(key: string, value: string, leaseId?: string): TxnOp {
  const op: TxnOp = { type: 'put', key, value: encoder.encode(value) };
  if (leaseId !== undefined) op.leaseId = leaseId;
  return op;
}

function iterate(watch: AsyncIterable<WatchEvent[]>): AsyncIterator<WatchEvent[]> {
  return watch[Symbol.asyncIterator]();
}

function text(kv: KeyValue | undefined): string | undefined {
  return kv === undefined ? undefined : decoder.decode(kv.value);
}

/** `key=value@mod/create/version` for every key under `prefix`, ascending. */
async function dump(store: MetadataStore, prefix: string): Promise<string[]> {
  const { kvs } = await store.range(prefix);
  return kvs.map(
    (kv) => `${kv.key}=${text(kv)}@${kv.modRevision}/${kv.createRevision}/${kv.version}`,
  );
}

/**
 * Writes 20 revisions, then watches from before them on a store whose watch queue holds 4
 * batches: the backlog overflows and must be replaced by one reset, after which the
 * consumer's view equals the store.
 */
async function expectOverflowBecomesReset(store: MetadataStore): Promise<void> {
  const p = `${uniqueName('overflow')}/`;
  const abort = new AbortController();
  try {
    const { revision: start } = await store.range(p, { limit: 1 });
    let last = start;
    for (let i = 0; i < 20; i++)
      last = (await store.txn([], [put(`${p}k${i % 3}`, String(i))])).revision;
    const it = iterate(store.watch(p, { signal: abort.signal, fromRevision: start }));
    const view = new Map<string, string>();
    let resets = 0;
    let seenRevision = start;
    const deadline = Date.now() + WAIT_MS;
    while (seenRevision < last) {
      expect(Date.now()).toBeLessThan(deadline);
      const result = await it.next();
      if (result.done === true) throw new Error('the watch ended early');
      for (const event of result.value) {
        if (event.type === 'reset') {
          resets++;
          view.clear();
          for (const kv of event.kvs) view.set(kv.key, text(kv) ?? '');
          seenRevision = event.revision;
        } else if (event.type === 'put') {
          view.set(event.kv.key, text(event.kv) ?? '');
          seenRevision = event.kv.modRevision;
        } else {
          view.delete(event.key);
          seenRevision = event.modRevision;
        }
      }
    }
    expect(resets).toBeGreaterThanOrEqual(1);
    const { kvs } = await store.range(p);
    expect(Object.fromEntries(view)).toEqual(
      Object.fromEntries(kvs.map((kv) => [kv.key, text(kv)])),
    );
  } finally {
    abort.abort();
  }
}

describeMetadataStoreContract('EtcdMetadataStore', async () => {
  // A root prefix per store: what one test writes is invisible to every other.
  const store = await EtcdMetadataStore.open({
    endpoints: [harness().etcdEndpoint],
    rootPrefix: `/${uniqueName('contract')}/`,
  });
  return { store, cleanup: () => store.close() };
});

describeMetadataStoreContract('FileMetadataStore on a file', async () => {
  const dir = await makeTempDir('file-metadata');
  const store = await FileMetadataStore.open({ path: join(dir.path, 'metadata.log') });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await dir.remove();
    },
  };
});

describeMetadataStoreContract('FileMetadataStore in memory', async () => {
  const store = await FileMetadataStore.open();
  return { store, cleanup: () => store.close() };
});

describe('FileMetadataStore', () => {
  let dir: TempDir;
  let path: string;
  const open: FileMetadataStore[] = [];

  async function openStore(
    options: Omit<Parameters<typeof FileMetadataStore.open>[0], 'path'> = {},
  ): Promise<FileMetadataStore> {
    const store = await FileMetadataStore.open({ ...options, path });
    open.push(store);
    return store;
  }

  beforeEach(async () => {
    dir = await makeTempDir('file-metadata');
    path = join(dir.path, 'metadata.log');
  });

  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
    await dir.remove();
  });

  it('keeps values and revisions across a reopen and continues the revision counter', async () => {
    const first = await openStore();
    const created = await first.txn([], [put('a', '1'), put('b', '1')]);
    await first.txn([], [put('a', '2')]);
    const last = await first.txn([], [{ type: 'delete', key: 'b' }, put('c', '3')]);
    const before = await dump(first, '');
    await first.close();

    const second = await openStore();
    expect(await dump(second, '')).toEqual(before);
    expect((await second.range('')).revision).toBe(last.revision);
    const next = await second.txn([], [put('a', '3')]);
    expect(next.revision).toBe(last.revision + 1);
    const a = await second.get('a');
    expect(a?.version).toBe(3);
    expect(a?.createRevision).toBe(created.revision);
  });

  it('drops garbage appended to the log on reopen and keeps the records before it', async () => {
    const first = await openStore();
    await first.txn([], [put('a', '1')]);
    const last = await first.txn([], [put('b', '2')]);
    const before = await dump(first, '');
    await first.close();
    const sizeBytes = (await stat(path)).size;
    await appendFile(path, Buffer.from([0x17, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]));

    const second = await openStore();
    expect(await dump(second, '')).toEqual(before);
    expect((await stat(path)).size).toBe(sizeBytes);
    expect((await second.txn([], [put('c', '3')])).revision).toBe(last.revision + 1);
  });

  it('drops a record cut off mid-write on reopen and keeps the records before it', async () => {
    const first = await openStore();
    const kept = await first.txn([], [put('a', '1')]);
    const before = await dump(first, '');
    await first.txn([], [put('b', '2')]);
    await first.close();
    await truncate(path, (await stat(path)).size - 5);

    const second = await openStore();
    expect(await dump(second, '')).toEqual(before);
    // The torn record's revision is free again, and what is written now survives a reopen.
    const next = await second.txn([], [put('c', '3')]);
    expect(next.revision).toBe(kept.revision + 1);
    const after = await dump(second, '');
    await second.close();
    const third = await openStore();
    expect(await dump(third, '')).toEqual(after);
  });

  it('refuses a second open of the same file while the first is open', async () => {
    const first = await openStore();
    const second = FileMetadataStore.open({ path });
    await expect(second).rejects.toBeInstanceOf(MetadataUnavailableError);
    await expect(second).rejects.toThrow(/in use by process/);
    await first.close();
    const third = await openStore();
    expect(await third.get('a')).toBeUndefined();
  });

  it('takes over a lock left behind by a process that no longer exists', async () => {
    const exited = spawnSync(process.execPath, ['-e', '']);
    expect(exited.status).toBe(0);
    await writeFile(`${path}.lock`, `${exited.pid}\n`);
    const store = await openStore();
    await store.txn([], [put('a', '1')]);
    expect(text(await store.get('a'))).toBe('1');
  });

  it('deletes keys attached to a lease when reopened, like an expired session', async () => {
    const first = await openStore();
    const lease = await first.grantLease(5_000);
    await first.txn([], [put('session', 'x', lease.id), put('durable', 'y')]);
    await first.close();
    await expect(lease.lost).resolves.toBeInstanceOf(Error);

    const second = await openStore();
    expect(await second.get('session')).toBeUndefined();
    expect(text(await second.get('durable'))).toBe('y');
  });

  it('compacts a grown log into a snapshot and keeps every value and revision', async () => {
    const store = await openStore({ compactAfterBytes: 4096 });
    const value = 'v'.repeat(100);
    let last = 0;
    for (let i = 0; i < 300; i++) {
      last = (await store.txn([], [put(`k${i % 10}`, `${value}${i}`)])).revision;
    }
    // 300 records of ~150 bytes would be ~45 KB; compaction keeps it near the threshold.
    expect((await stat(path)).size).toBeLessThan(3 * 4096);
    const before = await dump(store, '');
    await store.close();
    const reopened = await openStore({ compactAfterBytes: 4096 });
    expect(await dump(reopened, '')).toEqual(before);
    expect((await reopened.txn([], [put('k0', 'again')])).revision).toBe(last + 1);
  });

  it('gives a watch that starts before the kept history a reset with the current state', async () => {
    const store = await openStore({ maxHistoryRevisions: 2 });
    const r1 = await store.txn([], [put('a', '1')]);
    await store.txn([], [put('b', '2')]);
    await store.txn([], [put('c', '3')]);
    const last = await store.txn([], [{ type: 'delete', key: 'a' }]);
    const abort = new AbortController();
    const it = iterate(store.watch('', { signal: abort.signal, fromRevision: r1.revision - 1 }));
    const first = await it.next();
    abort.abort();
    expect(first.value).toEqual([
      {
        type: 'reset',
        revision: last.revision,
        kvs: [expect.objectContaining({ key: 'b' }), expect.objectContaining({ key: 'c' })],
      },
    ] satisfies unknown[]);
  });

  it('replaces a watch backlog that overflowed with one reset', async () => {
    await expectOverflowBecomesReset(await openStore({ maxWatchQueueBatches: 4 }));
  });

  it('replaces a watch backlog that overflowed with one reset in memory too', async () => {
    const store = await FileMetadataStore.open({ maxWatchQueueBatches: 4 });
    try {
      await expectOverflowBecomesReset(store);
    } finally {
      await store.close();
    }
  });
});

describe('EtcdMetadataStore', () => {
  const open: EtcdMetadataStore[] = [];

  async function openStore(
    rootPrefix = `/${uniqueName('etcd')}/`,
    extra = {},
  ): Promise<EtcdMetadataStore> {
    const store = await EtcdMetadataStore.open({
      endpoints: [harness().etcdEndpoint],
      rootPrefix,
      ...extra,
    });
    open.push(store);
    return store;
  }

  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
  });

  it('fails open with MetadataUnavailableError within the dial timeout when nothing listens', async () => {
    const port = await freePort();
    const startedMs = Date.now();
    await expect(
      EtcdMetadataStore.open({ endpoints: [`http://127.0.0.1:${port}`], dialTimeoutMs: 1_000 }),
    ).rejects.toBeInstanceOf(MetadataUnavailableError);
    expect(Date.now() - startedMs).toBeLessThan(1_000 + 2_000);
  });

  it('hides the root prefix and keeps stores with different roots apart', async () => {
    const root = `/${uniqueName('root')}/`;
    const a = await openStore(`${root}a/`);
    const b = await openStore(`${root}b/`);
    const parent = await openStore(root);
    await a.txn([], [put('k', 'from-a')]);
    await b.txn([], [put('k', 'from-b')]);
    expect((await a.get('k'))?.key).toBe('k');
    expect(text(await a.get('k'))).toBe('from-a');
    expect(text(await b.get('k'))).toBe('from-b');
    expect((await parent.range('')).kvs.map((kv) => kv.key)).toEqual(['a/k', 'b/k']);
    await a.txn([], [{ type: 'deletePrefix', prefix: '' }]);
    expect(text(await b.get('k'))).toBe('from-b');
  });

  it('emits a reset with the current state when the watch starts at a compacted revision', async () => {
    const store = await openStore();
    const r1 = await store.txn([], [put('a', '1')]);
    const r2 = await store.txn([], [put('b', '2'), put('a', '1b')]);
    const raw = new Etcd3({ hosts: harness().etcdEndpoint });
    try {
      await raw.kv.compact({ revision: r2.revision, physical: true });
    } finally {
      raw.close();
    }
    const abort = new AbortController();
    try {
      const it = iterate(store.watch('', { signal: abort.signal, fromRevision: r1.revision - 1 }));
      const first = await it.next();
      expect(first.done).toBe(false);
      const [reset, ...rest] = first.value as WatchEvent[];
      expect(rest).toEqual([]);
      expect(reset?.type).toBe('reset');
      if (reset?.type !== 'reset') return;
      expect(reset.revision).toBeGreaterThanOrEqual(r2.revision);
      expect(reset.kvs.map((kv) => `${kv.key}=${text(kv)}`)).toEqual(['a=1b', 'b=2']);
      // The watch goes on after the reset.
      const r3 = await store.txn([], [put('c', '3')]);
      const next = await it.next();
      expect(next.value).toEqual([
        {
          type: 'put',
          kv: expect.objectContaining({ key: 'c', modRevision: r3.revision }) as unknown,
        },
      ]);
    } finally {
      abort.abort();
    }
  });

  it('replaces a watch backlog that overflowed with one reset', async () => {
    await expectOverflowBecomesReset(await openStore(undefined, { maxWatchQueueBatches: 4 }));
  });

  it('rounds a lease TTL up to whole seconds and keeps the lease alive past it', async () => {
    const store = await openStore();
    const lease = await store.grantLease(1_500);
    expect(lease.ttlMs % 1_000).toBe(0);
    expect(lease.ttlMs).toBeGreaterThanOrEqual(2_000);
    await store.txn([], [put('session', 'x', lease.id)]);
    // A property of elapsed time: poll until two whole TTLs have passed, checking on every
    // poll that the key is still there (only keep-alives can keep it).
    const grantedMs = Date.now();
    let missingAtMs: number | undefined;
    await waitFor(
      async () => {
        if ((await store.get('session')) === undefined) missingAtMs ??= Date.now() - grantedMs;
        return Date.now() - grantedMs > 2 * lease.ttlMs;
      },
      { timeoutMs: 4 * lease.ttlMs, intervalMs: 100, description: 'two lease TTLs to pass' },
    );
    expect(missingAtMs).toBeUndefined();
    expect(text(await store.get('session'))).toBe('x');
    const notLost = await Promise.race([lease.lost.then(() => 'lost'), Promise.resolve('alive')]);
    expect(notLost).toBe('alive');
    await lease.revoke();
    expect(await store.get('session')).toBeUndefined();
  });

  it('reports MetadataUnavailableError, never a missing key, when etcd goes away', async () => {
    const server = await startEtcd();
    let store: EtcdMetadataStore | undefined;
    try {
      store = await EtcdMetadataStore.open({
        endpoints: [server.endpoint],
        requestTimeoutMs: 1_000,
      });
      await store.txn([], [put('k', 'v')]);
      expect(text(await store.get('k'))).toBe('v');
      const lease = await store.grantLease(2_000);
      await server.stop();
      await expect(store.get('k')).rejects.toBeInstanceOf(MetadataUnavailableError);
      await expect(store.range('')).rejects.toBeInstanceOf(MetadataUnavailableError);
      await expect(store.txn([], [put('k', 'w')])).rejects.toBeInstanceOf(MetadataUnavailableError);
      // Keep-alives fail, so the lease counts as lost within about its TTL.
      await expect(
        waitFor(() => Promise.race([lease.lost, Promise.resolve(undefined)]), {
          timeoutMs: 3 * lease.ttlMs,
          description: 'lease lost',
        }),
      ).resolves.toBeInstanceOf(MetadataUnavailableError);
    } finally {
      await store?.close();
      await server.stop();
    }
  });
});
