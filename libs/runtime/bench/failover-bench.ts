// `npm run bench:failover` — time from SIGKILL of a streaming node to the first successful
// produce on each of the channels it held. Real processes: etcd, a coordinator and two nodes
// (local WAL files in one shared directory), a client producing continuously to every channel.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StreamingClient } from '@woodstream/client';
import { pchannelForVChannel } from '@woodstream/streaming';
import { freePort, makeTempDir, ManagedProcess, startEtcd } from '@woodstream/testing';

const SESSION_TTL_MS = 2_000;
const PCHANNELS = 8;
const progress = (msg: string): void => void process.stderr.write(`[bench:failover] ${msg}\n`);
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const tsx = createRequire(import.meta.url).resolve('tsx');
const cli = (name: string, args: string[]): ManagedProcess =>
  ManagedProcess.spawn({
    name,
    command: process.execPath,
    args: [
      '--conditions=@woodstream/source',
      '--import',
      tsx,
      join(repoRoot, 'services/cli/src/main.ts'),
      ...args,
    ],
  });

const etcd = await startEtcd();
await using dir = await makeTempDir('bench-failover');
const processes: ManagedProcess[] = [];
let client: StreamingClient | undefined;
try {
  const metadata = [
    '--metadata.kind=etcd',
    `--metadata.etcdEndpoints=${etcd.endpoint}`,
    '--metadata.rootPrefix=/bench/',
  ];
  const port = await freePort();
  const coordinator = cli('coordinator', [
    'run',
    'coordinator',
    `--grpc.port=${port}`,
    // Ephemeral admin/metrics ports: nothing else on the machine may hold the defaults.
    '--http.port=0',
    `--pchannelCount=${PCHANNELS}`,
    '--balanceIntervalMs=500',
    `--sessionTtlMs=${SESSION_TTL_MS}`,
    ...metadata,
  ]);
  processes.push(coordinator);
  await coordinator.waitForOutput(/"msg":"ready"/, { timeoutMs: 60_000 });
  const nodes = [1, 2].map((i) =>
    cli(`node-${i}`, [
      'run',
      'node',
      '--grpc.port=0',
      '--http.port=0',
      `--sessionTtlMs=${SESSION_TTL_MS}`,
      '--drainTimeoutMs=0',
      ...metadata,
      '--storage.mode=local',
      `--storage.localDir=${join(dir.path, 'wal')}`,
    ]),
  );
  processes.push(...nodes);
  const addresses = await Promise.all(
    nodes.map(
      async (n) =>
        (
          await n.waitForOutput(/"address":"([^"]+)".*"msg":"ready"/, { timeoutMs: 60_000 })
        )[1] as string,
    ),
  );
  progress('cluster up; connecting');
  client = await StreamingClient.connect({ coordinator: `127.0.0.1:${port}` });
  // One vchannel per pchannel, so every channel is produced to.
  const pchannels = Array.from(
    { length: PCHANNELS },
    (_, i) => `wal-${String(i).padStart(4, '0')}`,
  );
  const vchannelOf = new Map<string, string>();
  for (let i = 0; vchannelOf.size < PCHANNELS && i < 100_000; i++) {
    const v = `v${i}`;
    const p = pchannelForVChannel(v, pchannels);
    if (!vchannelOf.has(p)) vchannelOf.set(p, v);
  }
  // Wait until every channel accepts writes, then learn which node holds which channel.
  for (const v of vchannelOf.values())
    await client.append({ vchannel: v, payload: new Uint8Array(16) });
  const status = cli('status', ['status', '--json', `--coordinator=127.0.0.1:${port}`]);
  await status.exited;
  const snapshot = JSON.parse(
    status
      .output()
      .split('\n')
      .find((l) => l.startsWith('{')) ?? '{}',
  ) as { nodes: { address: string; channels: { name: string }[] }[] };
  // The node holding the most channels (the coordinator may have put them all on one).
  const busiest = [...(snapshot.nodes ?? [])].sort(
    (a, b) => b.channels.length - a.channels.length,
  )[0];
  const victimIndex = Math.max(0, addresses.indexOf(busiest?.address ?? ''));
  progress(
    `addresses ${addresses.join(' ')}; snapshot ${JSON.stringify(snapshot.nodes?.map((n) => [n.address, n.channels.length]))}`,
  );
  const victimChannels = new Set(
    snapshot.nodes.find((n) => n.address === addresses[victimIndex])?.channels.map((c) => c.name) ??
      [],
  );
  progress(`killing node ${victimIndex + 1} (${victimChannels.size} channels) while producing`);

  let killedAt = 0;
  const recovered = new Map<string, number>();
  let stop = false;
  const loops = [...vchannelOf].map(async ([p, v]) => {
    // Bounded: one append in flight per channel, stop after recovery or 60 s.
    const deadline = Date.now() + 60_000;
    while (!stop && Date.now() < deadline) {
      const startedAt = performance.now();
      await client?.append({ vchannel: v, payload: new Uint8Array(64) });
      if (killedAt > 0 && startedAt >= killedAt && victimChannels.has(p) && !recovered.has(p))
        recovered.set(p, performance.now() - killedAt);
    }
  });
  await new Promise((r) => setTimeout(r, 500));
  killedAt = performance.now();
  await nodes[victimIndex]?.stop({ signal: 'SIGKILL' });
  while (recovered.size < victimChannels.size && performance.now() - killedAt < 60_000)
    await new Promise((r) => setTimeout(r, 50));
  stop = true;
  await Promise.allSettled(loops);
  const times = [...recovered.values()].sort((a, b) => a - b);
  const p = (q: number): number =>
    times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? NaN;
  /* eslint-disable no-console */
  console.log(
    `channels moved: ${recovered.size}/${victimChannels.size}; session TTL ${SESSION_TTL_MS} ms`,
  );
  console.log(
    `SIGKILL -> first successful produce per channel (ms): p50 ${p(0.5).toFixed(0)}, p99 ${p(0.99).toFixed(0)}, max ${(times.at(-1) ?? NaN).toFixed(0)}; target p99 <= ${SESSION_TTL_MS + 5000}`,
  );
} finally {
  await client?.close();
  for (const proc of processes.reverse()) await proc.stop({ signal: 'SIGKILL' });
  await etcd.stop();
}
