import { Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import {
  decodeRpcStatus,
  StreamingCode,
  StreamingError as StreamingErrorProto,
} from '@woodstream/proto';
import {
  ConflictError,
  CorruptDataError,
  DiskFullError,
  FencedError,
  MetadataUnavailableError,
  StorageUnavailableError,
  TruncatedError,
  WriterFailedError,
} from '@woodstream/woodpecker';
import { describe, expect, it } from 'vitest';
import {
  fnv1a32,
  fromServiceError,
  makeTimeTick,
  pchannelForVChannel,
  physicalMs,
  STREAMING_ERROR_TRAILER,
  StreamingError,
  TimeTickAllocator,
  toServiceError,
  toStreamingError,
  validateChannelName,
} from './index.js';

describe('streaming error codes', () => {
  it('round-trip through a gRPC status with the code, message and retryable flag intact', () => {
    const original = new StreamingError('UNMATCHED_CHANNEL_TERM', 'term 3 is stale, node holds 4');
    const back = fromServiceError(toServiceError(original));
    expect(back).toBeInstanceOf(StreamingError);
    expect(back).toMatchObject({
      code: 'UNMATCHED_CHANNEL_TERM',
      retryable: true,
      message: 'term 3 is stale, node holds 4',
    });
    expect(toServiceError(original).code).toBe(GrpcStatus.FAILED_PRECONDITION);
  });

  it('maps WAL fencing to CHANNEL_FENCED and unknown errors to INNER, which is not retried', () => {
    expect(toStreamingError(new FencedError('newer writer'))).toMatchObject({
      code: 'CHANNEL_FENCED',
      isWrongNode: true,
    });
    expect(toStreamingError(new TypeError('bug'))).toMatchObject({
      code: 'INNER',
      retryable: false,
    });
  });

  it('keeps the retry semantics of WAL errors: transient failures are retried, a failed writer re-routes', () => {
    const cases: [Error, string, boolean, boolean][] = [
      [new StorageUnavailableError('503 from storage'), 'UNAVAILABLE', true, false],
      [new MetadataUnavailableError('etcd timed out'), 'UNAVAILABLE', true, false],
      [new ConflictError('lost the compare-and-swap'), 'UNAVAILABLE', true, false],
      [new DiskFullError('no space'), 'RESOURCE_EXHAUSTED', true, false],
      [new WriterFailedError('writer stopped'), 'CHANNEL_FENCED', true, true],
      [new TruncatedError('before the truncation point'), 'INVALID_ARGUMENT', false, false],
      [new CorruptDataError('checksum mismatch'), 'UNRECOVERABLE', false, false],
    ];
    for (const [err, code, retryable, isWrongNode] of cases) {
      const mapped = toStreamingError(err);
      expect({
        code: mapped.code,
        retryable: mapped.retryable,
        isWrongNode: mapped.isWrongNode,
      }).toEqual({ code, retryable, isWrongNode });
      // The wire keeps what the client needs to act on it.
      expect(fromServiceError(toServiceError(mapped))).toMatchObject({ code, retryable });
    }
  });

  it('travel as gRPC status details: a google.rpc.Status holding the StreamingError; the older trailer is still sent and read', () => {
    const original = new StreamingError('RESOURCE_EXHAUSTED', 'producer window full');
    const sent = toServiceError(original);
    const raw = sent.metadata?.get('grpc-status-details-bin')[0] as Buffer;
    const status = decodeRpcStatus(raw);
    expect(status.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(status.details.map((d) => d.typeUrl)).toEqual([
      'type.googleapis.com/woodstream.common.v1.StreamingError',
    ]);
    expect(StreamingErrorProto.decode(status.details[0]?.value ?? new Uint8Array())).toMatchObject({
      code: StreamingCode.STREAMING_CODE_RESOURCE_EXHAUSTED,
      cause: 'producer window full',
      retryable: true,
    });
    // Sent on its own too, for versions from before status details.
    expect(
      StreamingErrorProto.decode(sent.metadata?.get(STREAMING_ERROR_TRAILER)[0] as Buffer),
    ).toMatchObject({ code: StreamingCode.STREAMING_CODE_RESOURCE_EXHAUSTED });
    const older = new Metadata();
    older.set(
      STREAMING_ERROR_TRAILER,
      Buffer.from(StreamingErrorProto.encode(original.toProto()).finish()),
    );
    expect(
      fromServiceError({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: 'x', metadata: older }),
    ).toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: 'producer window full' });
  });

  it('treats a transport failure without our trailer as the node going away', () => {
    expect(
      fromServiceError({ code: GrpcStatus.UNAVAILABLE, details: 'connection refused' }),
    ).toMatchObject({ code: 'ON_SHUTDOWN' });
    expect(fromServiceError({ code: GrpcStatus.UNKNOWN, details: 'boom' })).toMatchObject({
      code: 'INNER',
    });
  });
});

describe('channels', () => {
  it('maps a vchannel to the same pchannel every time, spreading names evenly', () => {
    const pchannels = Array.from({ length: 16 }, (_, i) => `wal-${i}`);
    expect(fnv1a32('hello')).toBe(0x4f9f2cab);
    expect(fnv1a32('')).toBe(0x811c9dc5);
    // The hash of the UTF-8 bytes, for ASCII and non-ASCII names alike (the reference below
    // hashes the encoded bytes one by one).
    const reference = (text: string): number => {
      let hash = 0x811c9dc5;
      for (const byte of Buffer.from(text, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
      return hash >>> 0;
    };
    for (const name of [
      'a',
      'orders',
      'v-0001_x',
      'ü',
      'ordres-é',
      '日本',
      'a😀b',
      'x'.repeat(300),
    ])
      expect(fnv1a32(name)).toBe(reference(name));
    expect(pchannelForVChannel('orders', pchannels)).toBe(
      pchannelForVChannel('orders', [...pchannels]),
    );
    const counts = new Map<string, number>();
    for (let i = 0; i < 1600; i++) {
      const p = pchannelForVChannel(`vchannel-${i}`, pchannels);
      counts.set(p, (counts.get(p) ?? 0) + 1);
    }
    expect(counts.size).toBe(16);
    for (const n of counts.values()) expect(n).toBeGreaterThan(50);
  });

  it('rejects invalid channel names with INVALID_ARGUMENT', () => {
    for (const bad of ['', 'a/b', '_x', 'x'.repeat(129), 'a b']) {
      expect(() => validateChannelName(bad)).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }) as Error,
      );
    }
    expect(validateChannelName('orders.eu-1')).toBe('orders.eu-1');
  });
});

describe('time ticks', () => {
  it('increase strictly even when the clock stalls or steps back, and start above the floor', () => {
    let now = 1_000;
    const alloc = new TimeTickAllocator(makeTimeTick(2_000, 5), () => now);
    const a = alloc.next();
    expect(a).toBe(makeTimeTick(2_000, 6));
    now = 3_000;
    const b = alloc.next();
    expect(b).toBe(makeTimeTick(3_000));
    const c = alloc.next();
    expect(c).toBe(b + 1n);
    now = 10;
    expect(alloc.next()).toBe(c + 1n);
    expect(physicalMs(b)).toBe(3_000);
  });
});
