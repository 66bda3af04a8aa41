import type { ClientDuplexStream } from '@grpc/grpc-js';
import { sleep } from '@woodstream/common';
import {
  AssignmentServiceClient,
  type AssignmentDiscoverRequest,
  type AssignmentDiscoverResponse,
  type VersionPair,
} from '@woodstream/proto';
import { StreamingError } from '@woodstream/streaming';
import { AssignmentSnapshot, compareVersions, type Route } from './assignment-snapshot.js';
import { Backoff } from './backoff.js';
import type { ResolvedOptions } from './options.js';
import type { ClientStats } from './types.js';

type DiscoverCall = ClientDuplexStream<AssignmentDiscoverRequest, AssignmentDiscoverResponse>;

interface Report {
  readonly pchannel: string;
  readonly term: bigint;
  readonly error: StreamingError;
}

/**
 * Keeps the newest assignment snapshot from the coordinator's AssignmentDiscover stream, which it
 * keeps open (reconnecting forever with backoff) until `close()`. Producers and consumers ask it
 * for routes and report nodes that deny owning a channel.
 *
 * Concurrency: all state is touched from the event loop only; waiters are woken synchronously
 * when a newer snapshot is installed.
 */
export class AssignmentWatcher {
  // Replaced (a new connection) after a stream that ended without a snapshot: see `run`.
  private grpc: AssignmentServiceClient;
  private readonly lifetime = new AbortController();
  // Invariant: only replaced by a snapshot whose version is strictly newer.
  private snapshot: AssignmentSnapshot | undefined;
  private readonly changeWaiters = new Set<() => void>();
  private call: DiscoverCall | undefined;
  // Highest term reported per pchannel: a node that keeps failing is reported once per term.
  // Bounded by the number of pchannels.
  private readonly reportedTerms = new Map<string, bigint>();
  // Reports made while the stream was down; at most one per pchannel (the newest term).
  private readonly unsentReports = new Map<string, Report>();
  private loop: Promise<void> | undefined;
  private closing = false;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly stats: ClientStats,
  ) {
    this.grpc = this.connectCoordinator();
  }

  /**
   * A client on a connection of its own. grpc-js shares connections between clients of the same
   * target by default; a private pool lets a reconnect reach another coordinator behind a
   * load-balanced address (a Kubernetes Service) instead of the same refusing standby.
   */
  private connectCoordinator(): AssignmentServiceClient {
    return new AssignmentServiceClient(this.options.coordinator, this.options.credentials, {
      ...this.options.channelOptions,
      'grpc.use_local_subchannel_pool': 1,
    });
  }

  start(): void {
    this.loop ??= this.run();
  }

  get current(): AssignmentSnapshot | undefined {
    return this.snapshot;
  }

  /** True once the watcher is closing: it installs no more snapshots. */
  get isClosed(): boolean {
    return this.closing;
  }

  /**
   * Resolves once a snapshot arrived. Rejects with `signal.reason` on abort and with ON_SHUTDOWN
   * when `timeoutMs` passes first or the watcher closes.
   */
  async ready(timeoutMs: number, signal?: AbortSignal): Promise<AssignmentSnapshot> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.snapshot !== undefined) return this.snapshot;
      if (this.closing) throw new StreamingError('ON_SHUTDOWN', 'the client is closed');
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) {
        throw new StreamingError(
          'ON_SHUTDOWN',
          `no assignment snapshot from the coordinator at ${this.options.coordinator} within ${timeoutMs} ms`,
        );
      }
      await this.waitForNewer(undefined, remainingMs, signal);
    }
  }

  /** The owner of `pchannel` in the current snapshot, or undefined when none is known. */
  route(pchannel: string, purpose: 'write' | 'read'): Route | undefined {
    return this.snapshot?.route(pchannel, purpose);
  }

  /**
   * Resolves when a snapshot newer than `version` is installed (at once if it already is), or
   * after `timeoutMs` — the backoff of a caller that retries even without news — or when the
   * watcher closes. Rejects with `signal.reason` on abort.
   */
  waitForNewer(
    version: VersionPair | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const isNewer = () =>
      this.snapshot !== undefined &&
      (version === undefined || compareVersions(this.snapshot.version, version) > 0);
    if (isNewer() || this.closing) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.changeWaiters.delete(onChange);
        signal?.removeEventListener('abort', onAbort);
      };
      const onChange = () => {
        if (!isNewer() && !this.closing) return;
        done();
        resolve();
      };
      const onAbort = () => {
        done();
        reject(signal?.reason as Error);
      };
      const timer = setTimeout(() => {
        done();
        resolve();
      }, timeoutMs);
      this.changeWaiters.add(onChange);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Tells the coordinator that the owner it published for `pchannel` at `term` denied it, so it
   * can re-balance sooner. Reported once per (pchannel, term): callers retry in loops and must
   * not flood the coordinator. Written at once when the stream is up, else on reconnect.
   */
  reportError(pchannel: string, term: bigint, error: StreamingError): void {
    const reported = this.reportedTerms.get(pchannel);
    if (reported !== undefined && reported >= term) return;
    this.reportedTerms.set(pchannel, term);
    const report = { pchannel, term, error };
    if (!this.writeReport(report)) this.unsentReports.set(pchannel, report);
  }

  /**
   * Sends `close`, waits (at most closeTimeoutMs) for the coordinator's `close`, and closes the
   * channel. Idempotent. Waiters are released and `ready` fails with ON_SHUTDOWN.
   */
  async close(): Promise<void> {
    if (this.closing) return this.loop;
    this.closing = true;
    this.notify();
    const call = this.call;
    if (call !== undefined) {
      const ended = new Promise<void>((resolve) => {
        call.once('status', () => resolve());
        call.once('data', (res: AssignmentDiscoverResponse) => {
          // The coordinator's `close` ends the handshake; half-close our side in reply.
          if (res.response?.$case === 'close') call.end();
        });
        const timer = setTimeout(resolve, this.options.closeTimeoutMs);
        timer.unref();
      });
      call.write({ command: { $case: 'close', close: {} } });
      await ended;
    }
    this.lifetime.abort(new StreamingError('ON_SHUTDOWN', 'the client is closed'));
    this.call?.cancel();
    await this.loop;
    this.grpc.close();
  }

  private writeReport(report: Report): boolean {
    const call = this.call;
    if (call === undefined || this.closing) return false;
    call.write({
      command: {
        $case: 'reportError',
        reportError: {
          pchannel: { name: report.pchannel, term: report.term, accessMode: 0 },
          error: report.error.toProto(),
        },
      },
    });
    this.stats.reportedErrors++;
    return true;
  }

  private notify(): void {
    for (const waiter of [...this.changeWaiters]) waiter();
  }

  private install(snapshot: AssignmentSnapshot): void {
    if (!snapshot.isNewerThan(this.snapshot)) return;
    this.snapshot = snapshot;
    this.notify();
  }

  /** One discovery stream after another until close; never throws. */
  private async run(): Promise<void> {
    const backoff = new Backoff(this.options.minBackoffMs, this.options.maxBackoffMs);
    let first = true;
    while (!this.closing) {
      if (!first) this.stats.discoveryReconnects++;
      first = false;
      const gotSnapshot = await this.stream(backoff);
      if (this.closing) break;
      if (gotSnapshot) backoff.reset();
      else {
        // Refused or unreachable (a standby, a dead coordinator): the next attempt opens a new
        // connection, which re-resolves the name and may land on the active coordinator.
        this.grpc.close();
        this.grpc = this.connectCoordinator();
      }
      try {
        await sleep(backoff.nextDelayMs(), this.lifetime.signal);
      } catch {
        break; // closed while waiting
      }
    }
  }

  /** Runs one AssignmentDiscover call until it ends; resolves whether it delivered a snapshot. */
  private stream(backoff: Backoff): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let gotSnapshot = false;
      const call = this.grpc.assignmentDiscover();
      this.call = call;
      call.on('data', (res: AssignmentDiscoverResponse) => {
        if (res.response?.$case !== 'fullAssignment') return;
        gotSnapshot = true;
        backoff.reset();
        this.install(new AssignmentSnapshot(res.response.fullAssignment));
      });
      // grpc-js emits 'error' for a non-OK status and then always 'status'; the no-op listener
      // keeps the error from being thrown as an uncaught exception.
      call.on('error', () => undefined);
      call.on('status', () => {
        if (this.call === call) this.call = undefined;
        resolve(gotSnapshot);
      });
      for (const report of this.unsentReports.values()) this.writeReport(report);
      this.unsentReports.clear();
    });
  }
}
