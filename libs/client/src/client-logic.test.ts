import { AccessMode, type FullAssignment } from '@woodstream/proto';
import { pchannelForVChannel, StreamingError } from '@woodstream/streaming';
import { describe, expect, it } from 'vitest';
import { AssignmentSnapshot, compareVersions } from './assignment-snapshot.js';
import { Backoff } from './backoff.js';
import { withDefaults } from './options.js';
import { resumeRequest, toDeliverFilters, toDeliverPolicy } from './resumable-consumer.js';
import { fromProtoId, toProtoId } from './types.js';

function full(
  version: [bigint, bigint],
  owners: [string, bigint, string, AccessMode?][],
): FullAssignment {
  return {
    version: { global: version[0], local: version[1] },
    assignments: owners.map(([name, term, address, accessMode]) => ({
      node: { serverId: 7n, address },
      channels: [{ name, term, accessMode: accessMode ?? AccessMode.ACCESS_MODE_READ_WRITE }],
    })),
    pchannelCount: 2,
    pchannels: ['p-0', 'p-1'],
  };
}

describe('assignment snapshots', () => {
  it('order versions by global first, then local', () => {
    expect(compareVersions({ global: 2n, local: 0n }, { global: 1n, local: 9n })).toBe(1);
    expect(compareVersions({ global: 1n, local: 3n }, { global: 1n, local: 4n })).toBe(-1);
    expect(compareVersions({ global: 1n, local: 3n }, { global: 1n, local: 3n })).toBe(0);
    const older = new AssignmentSnapshot(full([1n, 5n], []));
    const newer = new AssignmentSnapshot(full([2n, 1n], []));
    expect(newer.isNewerThan(older)).toBe(true);
    expect(older.isNewerThan(newer)).toBe(false);
    expect(older.isNewerThan(undefined)).toBe(true);
  });

  it('route a pchannel to the owner with the highest term', () => {
    const snap = new AssignmentSnapshot(
      full(
        [1n, 1n],
        [
          ['p-0', 3n, 'old:1'],
          ['p-0', 4n, 'new:1'],
        ],
      ),
    );
    expect(snap.route('p-0', 'write')).toMatchObject({ address: 'new:1', term: 4n });
    expect(snap.route('p-1', 'read')).toBeUndefined();
  });

  it('do not route writes to a read-only assignment', () => {
    const snap = new AssignmentSnapshot(
      full([1n, 1n], [['p-0', 1n, 'a:1', AccessMode.ACCESS_MODE_READ_ONLY]]),
    );
    expect(snap.route('p-0', 'write')).toBeUndefined();
    expect(snap.route('p-0', 'read')).toMatchObject({ address: 'a:1' });
  });

  it('map a vchannel by hash unless the caller names a known pchannel', () => {
    const snap = new AssignmentSnapshot(full([1n, 1n], []));
    expect(snap.pchannelFor('orders', undefined)).toBe(
      pchannelForVChannel('orders', ['p-0', 'p-1']),
    );
    expect(snap.pchannelFor('orders', 'p-1')).toBe('p-1');
    expect(() => snap.pchannelFor('orders', 'p-9')).toThrow(StreamingError);
  });
});

describe('backoff', () => {
  it('grows from the minimum to the maximum and starts over after reset', () => {
    const b = new Backoff(100, 5_000, () => 1);
    const delays = Array.from({ length: 8 }, () => b.nextDelayMs());
    expect(delays).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    b.reset();
    expect(b.nextDelayMs()).toBe(100);
    const low = new Backoff(100, 5_000, () => 0);
    expect(low.nextDelayMs()).toBe(50);
  });
});

describe('resume requests', () => {
  it('start with the caller policy and filters before anything was delivered', () => {
    const r = resumeRequest('earliest', [{ timeTickGte: 5n }], undefined, undefined);
    expect(r.deliverPolicy.policy?.$case).toBe('all');
    expect(r.deliverFilters).toEqual([{ filter: { $case: 'timeTickGte', timeTickGte: 5n } }]);
  });

  it('resume from the last confirmed id and skip up to the last delivered message tick', () => {
    const lc = { segmentId: 1, entryId: 4 };
    const r = resumeRequest({ after: { segmentId: 0, entryId: 0 } }, [], lc, 42n);
    expect(r.deliverPolicy).toEqual({ policy: { $case: 'startFrom', startFrom: lc } });
    expect(r.deliverFilters).toEqual([{ filter: { $case: 'timeTickGt', timeTickGt: 42n } }]);
  });

  it('keep the original start and the caller filters while no message was delivered', () => {
    const r = resumeRequest('latest', [{ timeTickGt: 3n }], undefined, undefined);
    expect(r.deliverPolicy.policy?.$case).toBe('latest');
    expect(r.deliverFilters).toEqual([{ filter: { $case: 'timeTickGt', timeTickGt: 3n } }]);
  });

  it('reject positions and filters that cannot be sent', () => {
    expect(() => toDeliverPolicy({ from: { segmentId: -1, entryId: 0 } })).toThrow(/non-negative/);
    expect(() => toDeliverPolicy('middle' as never)).toThrow(StreamingError);
    expect(() => toDeliverFilters([{ nope: 1 } as never])).toThrow(StreamingError);
    expect(toDeliverPolicy({ from: { segmentId: 2, entryId: 3 } })).toEqual({
      policy: { $case: 'startFrom', startFrom: { segmentId: 2, entryId: 3 } },
    });
  });
});

describe('message ids and options', () => {
  it('convert ids both ways and refuse ids beyond 2^53', () => {
    expect(fromProtoId(toProtoId({ segmentId: 3, entryId: 9 }, 'x'), 'x')).toEqual({
      segmentId: 3,
      entryId: 9,
    });
    expect(() => toProtoId({ segmentId: 2 ** 60, entryId: 0 }, 'x')).toThrow(/below 2\^53/);
    expect(() => fromProtoId(undefined, 'x')).toThrow(StreamingError);
  });

  it('apply defaults and refuse out-of-range limits', () => {
    const o = withDefaults({ coordinator: 'c:1' });
    expect(o).toMatchObject({
      connectTimeoutMs: 30_000,
      maxBufferedMessages: 1024,
      maxInflightAppends: 1024,
      minBackoffMs: 100,
      maxBackoffMs: 5_000,
    });
    expect(() => withDefaults({ coordinator: 'c:1', maxBufferedMessages: 65_537 })).toThrow(
      RangeError,
    );
    expect(() =>
      withDefaults({ coordinator: 'c:1', minBackoffMs: 500, maxBackoffMs: 100 }),
    ).toThrow(RangeError);
    expect(() => withDefaults({ coordinator: '' })).toThrow(RangeError);
  });

  it('give every channel a 4 MiB HTTP/2 receive window unless told otherwise', () => {
    const window = (o: Parameters<typeof withDefaults>[0]): unknown =>
      withDefaults(o).channelOptions['grpc-node.flow_control_window'];
    expect(window({ coordinator: 'c:1' })).toBe(4 * 1024 * 1024);
    expect(window({ coordinator: 'c:1', flowControlWindowBytes: 1024 * 1024 })).toBe(1024 * 1024);
    // An explicit channel option wins.
    expect(
      window({
        coordinator: 'c:1',
        channelOptions: { 'grpc-node.flow_control_window': 128 * 1024 },
      }),
    ).toBe(128 * 1024);
    expect(() => withDefaults({ coordinator: 'c:1', flowControlWindowBytes: 1024 })).toThrow(
      RangeError,
    );
  });
});
