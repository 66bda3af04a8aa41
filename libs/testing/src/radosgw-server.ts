import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ManagedProcess } from './managed-process.js';
import { freePort, isPortOpen } from './ports.js';
import { runCommand } from './run-command.js';
import type { S3Endpoint } from './s3-endpoint.js';
import { makeTempDir } from './temp-dir.js';
import { waitFor } from './wait-for.js';

/**
 * A throwaway single-node Ceph cluster (1 mon, 1 bluestore-on-file OSD, no mgr, auth none)
 * with radosgw in front: the S3-compatible server that honours conditional writes.
 */
export interface RadosgwServer {
  readonly s3: S3Endpoint;
  readonly processes: readonly ManagedProcess[];
  /** Stops radosgw, the OSD and the monitor (in that order) and deletes the cluster's files. */
  stop(): Promise<void>;
}

const ACCESS_KEY = 'WOODSTREAMTEST';
const SECRET_KEY = 'woodstream-test-secret';
const COMMAND_TIMEOUT_MS = 60_000;

function cephConf(dir: string, fsid: string, monPort: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon host = v1:127.0.0.1:${monPort}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
# Without these three the OSD fails with "Address family not supported".
ms bind msgr2 = false
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = ${dir}/run
admin socket = ${dir}/run/$cluster-$name.asok
log file = ${dir}/log/$cluster-$name.log
keyring = ${dir}/keyring
mon data = ${dir}/mon/$cluster-$id
osd data = ${dir}/osd/$cluster-$id
osd objectstore = bluestore
bluestore block create = true
# A sparse file: the space is only used as objects are written.
bluestore block size = 10737418240
bluestore fsck on mount = false
osd memory target = 1073741824
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${dir}/rgw
rgw dns name = 127.0.0.1
`;
}

/** Starts the cluster and resolves once radosgw serves S3 and a user exists. About 15–30 s. */
export async function startRadosgw(options: { timeoutMs?: number } = {}): Promise<RadosgwServer> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const dir = await makeTempDir('radosgw');
  const root = dir.path;
  const processes: ManagedProcess[] = [];
  const stop = async (): Promise<void> => {
    // Reverse start order: clients of the cluster first, the monitor last.
    for (const proc of [...processes].reverse()) await proc.stop({ graceMs: 10_000 });
    await dir.remove();
  };

  try {
    const fsid = randomUUID();
    const [monPort, rgwPort] = [await freePort(), await freePort()];
    const conf = join(root, 'ceph.conf');
    for (const sub of ['run', 'log', 'mon', 'osd', 'rgw'])
      await mkdir(join(root, sub), { recursive: true });
    await writeFile(conf, cephConf(root, fsid, monPort, rgwPort));
    const ceph = (cmd: string, args: string[]): ReturnType<typeof runCommand> =>
      runCommand(cmd, ['-c', conf, ...args], { timeoutMs: COMMAND_TIMEOUT_MS });

    const keyring = join(root, 'keyring');
    await runCommand(
      'ceph-authtool',
      ['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *'],
      {
        timeoutMs: COMMAND_TIMEOUT_MS,
      },
    );
    await runCommand(
      'ceph-authtool',
      [
        keyring,
        '--gen-key',
        '-n',
        'client.admin',
        '--cap',
        'mon',
        'allow *',
        '--cap',
        'osd',
        'allow *',
        '--cap',
        'mgr',
        'allow *',
      ],
      { timeoutMs: COMMAND_TIMEOUT_MS },
    );
    const monmap = join(root, 'monmap');
    await runCommand(
      'monmaptool',
      ['--create', '--addv', 'a', `[v1:127.0.0.1:${monPort}]`, '--fsid', fsid, monmap],
      {
        timeoutMs: COMMAND_TIMEOUT_MS,
      },
    );
    await ceph('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', keyring]);
    const mon = ManagedProcess.spawn({
      name: 'ceph-mon',
      command: 'ceph-mon',
      args: ['-c', conf, '-i', 'a', '-f'],
    });
    processes.push(mon);
    const answeringFsid = await waitFor(
      async () => {
        if (!mon.isRunning) throw mon.failure('exited during start');
        return (await ceph('ceph', ['--connect-timeout', '5', 'fsid'])).stdout.trim();
      },
      { timeoutMs, intervalMs: 200, description: 'ceph-mon to answer', signal: whileRunning(mon) },
    );
    // Two clusters starting at once can be handed the same free port; without authentication the
    // other cluster's monitor then answers ours, and our OSD later fails with "wrong fsid".
    if (answeringFsid !== fsid) {
      throw new Error(
        `another Ceph monitor (fsid ${answeringFsid}) answered on port ${monPort}; start again`,
      );
    }

    const osdUuid = randomUUID();
    const osdId = (await ceph('ceph', ['osd', 'new', osdUuid])).stdout.trim();
    if (!/^\d+$/.test(osdId)) throw new Error(`unexpected answer from 'ceph osd new': ${osdId}`);
    await mkdir(join(root, 'osd', `ceph-${osdId}`), { recursive: true });
    await ceph('ceph-osd', ['-i', osdId, '--mkfs', '--osd-uuid', osdUuid]);
    const osd = ManagedProcess.spawn({
      name: 'ceph-osd',
      command: 'ceph-osd',
      args: ['-c', conf, '-i', osdId, '-f'],
    });
    processes.push(osd);
    await waitFor(
      async () => {
        if (!osd.isRunning) throw osd.failure('exited during start');
        const { stdout } = await ceph('ceph', ['osd', 'stat']);
        return /\b1 up\b/.test(stdout);
      },
      { timeoutMs, intervalMs: 200, description: 'the OSD to be up', signal: whileRunning(osd) },
    );

    const rgw = ManagedProcess.spawn({
      name: 'radosgw',
      command: 'radosgw',
      args: ['-c', conf, '-n', 'client.rgw', '-f'],
    });
    processes.push(rgw);
    await waitFor(
      async () => {
        if (!rgw.isRunning) throw rgw.failure('exited during start');
        return isPortOpen(rgwPort);
      },
      { timeoutMs, intervalMs: 100, description: 'radosgw to listen', signal: whileRunning(rgw) },
    );
    await ceph('radosgw-admin', [
      '-n',
      'client.admin',
      'user',
      'create',
      '--uid=woodstream-test',
      '--display-name=Woodstream tests',
      `--access-key=${ACCESS_KEY}`,
      `--secret=${SECRET_KEY}`,
    ]);
    return {
      s3: {
        endpoint: `http://127.0.0.1:${rgwPort}`,
        region: 'us-east-1',
        accessKeyId: ACCESS_KEY,
        secretAccessKey: SECRET_KEY,
        conditionalWrites: true,
      },
      processes,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Aborted as soon as `proc` exits, so a wait on a daemon that died fails at once (with its
 * output) instead of polling until the time limit.
 */
function whileRunning(proc: ManagedProcess): AbortSignal {
  const controller = new AbortController();
  void proc.exited.then(() => controller.abort(proc.failure('exited during start')));
  return controller.signal;
}
