// Child process for the crash-recovery test: appends numbered entries (`e0`, `e1`, …) with many
// in flight and reports each acknowledgement to the parent over IPC, until it is killed.
import {
  EtcdMetadataStore,
  FileMetadataStore,
  S3ObjectStore,
  Woodpecker,
  type MetadataStore,
  type StorageOptions,
  type WalLimits,
} from '@woodstream/woodpecker';
import type { S3BucketConfig } from './s3-bucket-config.js';

export interface CrashWriterConfig {
  logName: string;
  metadataPath?: string;
  etcd?: { endpoint: string; rootPrefix: string };
  rootDir?: string;
  s3?: S3BucketConfig;
  /** Limits of the child's client, over the defaults below. */
  limits?: Partial<WalLimits>;
  /** Append this many entries, then wait for a `{ type: 'more' }` message before the next batch. */
  burst?: number;
}

const MAX_ENTRIES = 1_000_000;
const MAX_IN_FLIGHT = 32;

const send = (message: unknown): void => {
  process.send?.(message);
};
// The parent owns this process: if it goes away, stop.
process.on('disconnect', () => process.exit(2));

const config = JSON.parse(process.argv[2] ?? '{}') as CrashWriterConfig;
const metadata: MetadataStore = config.etcd
  ? await EtcdMetadataStore.open({
      endpoints: [config.etcd.endpoint],
      rootPrefix: config.etcd.rootPrefix,
    })
  : await FileMetadataStore.open({ path: config.metadataPath as string });
const storage: StorageOptions = config.s3
  ? { mode: 'object', objectStore: await S3ObjectStore.open(config.s3) }
  : { mode: 'local', rootDir: config.rootDir as string };
const wp = Woodpecker.open({
  metadata,
  storage,
  limits: { flushAgeMs: 5, maxBlockBytes: 64 * 1024, ...config.limits },
});
const writer = await (await wp.openLog(config.logName)).openWriter();
send({ type: 'ready', epoch: writer.epoch });

let more: (() => void) | undefined;
process.on('message', (m: { type?: string }) => {
  if (m.type === 'more') more?.();
});

const inflight = new Set<Promise<void>>();
for (let n = 0; n < MAX_ENTRIES; n++) {
  if (config.burst !== undefined && n > 0 && n % config.burst === 0) {
    await Promise.all(inflight);
    send({ type: 'idle', n });
    await new Promise<void>((resolve) => (more = resolve));
  }
  if (inflight.size >= MAX_IN_FLIGHT) await Promise.race(inflight);
  const p = writer.append(new TextEncoder().encode(`e${n}`)).then(
    (position) => send({ type: 'ack', n, position }),
    (err: unknown) => send({ type: 'error', n, message: String(err) }),
  );
  inflight.add(p);
  void p.finally(() => inflight.delete(p));
}
