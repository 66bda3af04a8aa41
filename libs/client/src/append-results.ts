import { assert } from '@woodstream/common';
import type { AppendResult } from './types.js';

/**
 * The outcomes of one `append`/`appendBatch` call: one slot per message, filled by whichever
 * producer sends it, and one promise for the whole call. It settles once every slot has, with
 * the results in input order or with the first failure in input order (the other messages may
 * have been stored).
 *
 * One object and one promise per call rather than a promise per message: at tens of thousands
 * of messages per second, a promise, its settle functions and an allSettled record per message
 * were a large share of the client's allocations.
 */
export class AppendResults {
  readonly promise: Promise<AppendResult[]>;
  private readonly values: AppendResult[];
  // Invariant: remaining === number of slots not yet settled; each slot settles exactly once.
  private remaining: number;
  private readonly settled: Uint8Array;
  private failedAt = -1;
  private failure: Error | undefined;
  private resolvePromise!: (values: AppendResult[]) => void;
  private rejectPromise!: (err: Error) => void;

  constructor(count: number) {
    assert(Number.isInteger(count) && count > 0, 'a call appends at least one message');
    this.values = new Array<AppendResult>(count);
    this.remaining = count;
    this.settled = new Uint8Array(count);
    this.promise = new Promise<AppendResult[]>((resolve, reject) => {
      this.resolvePromise = resolve;
      this.rejectPromise = reject;
    });
    // The call may have given up already (aborted while waiting for room) when the last slot
    // fails; nobody awaits the promise then, and that is not an unhandled rejection.
    this.promise.catch(() => undefined);
  }

  resolve(index: number, value: AppendResult): void {
    this.take(index);
    this.values[index] = value;
    this.finishIfDone();
  }

  reject(index: number, err: Error): void {
    this.take(index);
    if (this.failedAt < 0 || index < this.failedAt) {
      this.failedAt = index;
      this.failure = err;
    }
    this.finishIfDone();
  }

  private take(index: number): void {
    assert(this.settled[index] === 0, 'an append result settles once');
    this.settled[index] = 1;
    this.remaining--;
  }

  private finishIfDone(): void {
    if (this.remaining > 0) return;
    if (this.failure !== undefined) this.rejectPromise(this.failure);
    else this.resolvePromise(this.values);
  }
}
