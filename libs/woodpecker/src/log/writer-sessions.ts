import { setTimeout as delay } from 'node:timers/promises';
import type { Lease, MetadataStore } from '../storage/metadata-store.js';
import { encodeJson, keys, type WriterSession } from './metadata.js';

interface Registered {
  name: string;
  epoch: number;
  openedAtMs: number;
  /** The writer's fencing token: a session is (re)written only while it still holds. */
  writerRevision: number;
}

// Re-granting a lost lease: first retry soon, then back off up to the lease's lifetime.
const REGRANT_FIRST_DELAY_MS = 100;

/**
 * Liveness of the writers opened through one client. All of them share one lease (one
 * keep-alive stream per process, not per log); each writer's session key is attached to it when
 * the writer opens. If the lease is lost while the process lives (etcd unreachable for longer
 * than the lease), a new one is granted and every writer that is still the current writer of
 * its log writes its session again. A writer that maintenance took over meanwhile is fenced
 * (its writer revision is gone) and is not re-registered.
 */
export class WriterSessions {
  private lease: Lease | undefined;
  private granting: Promise<Lease> | undefined;
  // Invariant: at most one entry per log name: the newest writer of that log in this client.
  private readonly live = new Map<string, Registered>();
  private readonly abort = new AbortController();
  private regranting: Promise<void> | undefined;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly ttlMs: number,
  ) {}

  /** The lease to attach a new writer's session to; granted on first use. */
  async leaseId(signal?: AbortSignal): Promise<string> {
    if (this.lease !== undefined) return this.lease.id;
    this.granting ??= this.grant(signal).finally(() => {
      this.granting = undefined;
    });
    return (await this.granting).id;
  }

  private async grant(signal?: AbortSignal): Promise<Lease> {
    const lease = await this.metadata.grantLease(this.ttlMs, { signal });
    if (this.abort.signal.aborted) {
      await lease.revoke().catch(() => undefined);
      throw this.abort.signal.reason as Error;
    }
    this.lease = lease;
    void lease.lost.then(() => this.onLost(lease));
    return lease;
  }

  /** Session value for a writer opening at `epoch`. */
  static value(epoch: number, openedAtMs: number): Uint8Array {
    const session: WriterSession = { epoch, openedAtMs };
    return encodeJson(session);
  }

  /** Remembers an open writer so that its session is rewritten if the lease is lost. */
  register(session: Registered): void {
    this.live.set(session.name, session);
  }

  /**
   * Forgets a writer that closed or failed and deletes its session key if it is still the
   * log's current writer (so maintenance may act on what it left). Best effort: the lease
   * removes the key anyway when this client closes or dies.
   */
  async release(name: string, writerRevision: number): Promise<void> {
    if (this.live.get(name)?.writerRevision === writerRevision) this.live.delete(name);
    try {
      await this.metadata.txn(
        [{ key: keys.writer(name), modRevision: writerRevision }],
        [{ type: 'delete', key: keys.session(name) }],
        { signal: this.abort.signal },
      );
    } catch {
      // The lease takes the key with it; nothing is lost by leaving it for now.
    }
  }

  private onLost(lease: Lease): void {
    if (this.lease === lease) this.lease = undefined;
    if (this.abort.signal.aborted || this.live.size === 0) return;
    this.regranting ??= this.regrant().finally(() => {
      this.regranting = undefined;
    });
  }

  private async regrant(): Promise<void> {
    const signal = this.abort.signal;
    for (let wait = REGRANT_FIRST_DELAY_MS; !signal.aborted && this.live.size > 0;) {
      try {
        const leaseId = await this.leaseId(signal);
        for (const s of [...this.live.values()]) {
          const result = await this.metadata.txn(
            [{ key: keys.writer(s.name), modRevision: s.writerRevision }],
            [
              {
                type: 'put',
                key: keys.session(s.name),
                value: WriterSessions.value(s.epoch, s.openedAtMs),
                leaseId,
              },
            ],
            { signal },
          );
          // Superseded (a newer writer, or maintenance): that writer is fenced already.
          if (!result.succeeded && this.live.get(s.name) === s) this.live.delete(s.name);
        }
        return;
      } catch {
        if (signal.aborted) return;
        await delay(wait, undefined, { signal }).catch(() => undefined);
        wait = Math.min(wait * 2, this.ttlMs);
      }
    }
  }

  /** Revokes the lease (deleting every session key of this client). */
  async close(): Promise<void> {
    this.abort.abort(new Error('writer sessions closed'));
    this.live.clear();
    await this.regranting;
    const lease = this.lease ?? (await this.granting?.catch(() => undefined));
    this.lease = undefined;
    await lease?.revoke().catch(() => undefined);
  }
}
