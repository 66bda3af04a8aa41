import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { waitFor, WaitTimeoutError } from './wait-for.js';

describe('waitFor', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('returns the first truthy value of the condition', async () => {
    let calls = 0;
    const result = waitFor(() => (++calls >= 3 ? `done after ${calls}` : false), {
      timeoutMs: 1_000,
      intervalMs: 10,
    });
    await vi.advanceTimersByTimeAsync(50);
    await expect(result).resolves.toBe('done after 3');
  });

  it('treats a throwing condition as not yet and reports its last error on timeout', async () => {
    const result = waitFor(
      () => {
        throw new Error('still starting');
      },
      { timeoutMs: 100, intervalMs: 10, description: 'the server' },
    );
    const settled = result.catch((err: unknown) => err);
    await vi.advanceTimersByTimeAsync(200);
    const err = await settled;
    expect(err).toBeInstanceOf(WaitTimeoutError);
    expect((err as Error).message).toMatch(
      /timed out after 100 ms waiting for the server: last error: still starting/,
    );
  });

  it('rejects with the abort reason when its signal is aborted', async () => {
    const controller = new AbortController();
    const result = waitFor(() => false, {
      timeoutMs: 10_000,
      intervalMs: 10,
      signal: controller.signal,
    });
    const settled = result.catch((err: unknown) => err);
    await vi.advanceTimersByTimeAsync(30);
    controller.abort(new Error('test over'));
    expect(await settled).toMatchObject({ message: 'test over' });
  });
});
