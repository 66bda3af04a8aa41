import { join } from 'node:path';
import { ManagedProcess } from './managed-process.js';
import { freePort } from './ports.js';
import { makeTempDir } from './temp-dir.js';
import { waitFor } from './wait-for.js';

/** A running etcd (Debian `etcd-server`) on loopback with its own data dir. */
export interface EtcdServer {
  /** Client URL, e.g. `http://127.0.0.1:23791`. */
  readonly endpoint: string;
  /** The current etcd process (a new one after {@link EtcdServer.restart}). */
  readonly process: ManagedProcess;
  /** Stops the process but keeps its data and ports, to simulate an outage. Idempotent. */
  pause(): Promise<void>;
  /** Starts etcd again on the same ports and data (after {@link EtcdServer.pause}). */
  restart(): Promise<void>;
  /** Stops the process (SIGTERM, then SIGKILL) and deletes its data dir. */
  stop(): Promise<void>;
}

/** Starts a single-member etcd cluster and resolves when its /health endpoint says healthy. */
export async function startEtcd(
  options: { binary?: string; timeoutMs?: number } = {},
): Promise<EtcdServer> {
  const dir = await makeTempDir('etcd');
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const spawn = (): ManagedProcess =>
    ManagedProcess.spawn({
      name: 'etcd',
      command: options.binary ?? 'etcd',
      args: [
        '--name=harness',
        `--data-dir=${join(dir.path, 'data')}`,
        `--listen-client-urls=${clientUrl}`,
        `--advertise-client-urls=${clientUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=harness=${peerUrl}`,
        '--initial-cluster-state=new',
        '--logger=zap',
        '--log-level=warn',
      ],
    });
  let proc = spawn();
  const healthy = async (): Promise<void> => {
    await waitFor(
      async () => {
        if (!proc.isRunning) throw proc.failure('exited during start');
        const res = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1_000) });
        const body = (await res.json()) as { health?: string };
        return body.health === 'true';
      },
      { timeoutMs: options.timeoutMs ?? 30_000, intervalMs: 50, description: 'etcd /health' },
    );
  };
  const pause = async (): Promise<void> => {
    await proc.stop({ graceMs: 5_000 });
  };
  const stop = async (): Promise<void> => {
    await proc.stop({ graceMs: 5_000 });
    await dir.remove();
  };
  try {
    await healthy();
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    endpoint: clientUrl,
    get process() {
      return proc;
    },
    pause,
    async restart() {
      await pause();
      proc = spawn();
      await healthy();
    },
    stop,
  };
}
