import { describe, expect, it } from 'vitest';
import { StreamingCode } from './gen/common.js';
import {
  ProduceRequest,
  ProduceResponse,
  type ProduceMessage,
  type ProduceResult,
} from './gen/streaming.js';
import {
  decodeProduceRequest,
  decodeProduceResponse,
  encodeProduceRequest,
  encodeProduceRequestParts,
  encodeProduceResponse,
} from './produce-codec.js';

const generated = (r: ProduceRequest): Buffer => Buffer.from(ProduceRequest.encode(r).finish());
const generatedResponse = (r: ProduceResponse): Buffer =>
  Buffer.from(ProduceResponse.encode(r).finish());

const message = (i: number, payloadBytes: number): ProduceMessage => ({
  requestId: i,
  vchannel: i % 3 === 0 ? '' : `vc-${i}-é`,
  message:
    i % 5 === 4
      ? undefined
      : {
          payload: Buffer.alloc(payloadBytes, i),
          properties:
            i % 2 === 0
              ? {}
              : { a: 'b', '': 'empty key', k: '', ü: 'x'.repeat(200), _tp: `00-${i}` },
        },
  // Absent (0), small, and past 32 bits.
  sequence: i % 4 === 0 ? 0 : i % 4 === 1 ? i : i * 2 ** 21 + 1,
});

const requests: ProduceRequest[] = [
  { request: { $case: 'produce', produce: message(1, 10) } },
  { request: { $case: 'produce', produce: message(0, 0) } },
  { request: { $case: 'produce', produce: message(7, 70_000) } },
  {
    request: {
      $case: 'produce',
      produce: {
        requestId: Number.MAX_SAFE_INTEGER,
        vchannel: 'v',
        message: undefined,
        sequence: Number.MAX_SAFE_INTEGER,
      },
    },
  },
  {
    request: {
      $case: 'produceBatch',
      produceBatch: {
        messages: Array.from({ length: 300 }, (_, i) => message(i + 2 ** 30, (i * 37) % 3000)),
      },
    },
  },
  { request: { $case: 'produceBatch', produceBatch: { messages: [] } } },
  { request: { $case: 'close', close: {} } },
  {
    request: {
      $case: 'open',
      open: { pchannel: { name: 'p', term: 3n, accessMode: 0 }, producerId: 2n ** 64n - 3n },
    },
  },
  { request: undefined },
];

const success = (i: bigint): ProduceResult => ({
  requestId: Number(i),
  outcome: {
    $case: 'success',
    success: {
      id: { segmentId: Number(i % 3n), entryId: Number(i * 1000n) },
      timeTick: i === 0n ? 0n : (1_764_000_000_000n << 18n) | i,
      lastConfirmedId:
        i % 4n === 0n ? undefined : { segmentId: Number.MAX_SAFE_INTEGER, entryId: 0 },
    },
  },
});

const responses: ProduceResponse[] = [
  { response: { $case: 'result', result: success(5n) } },
  { response: { $case: 'result', result: success(0n) } },
  {
    response: {
      $case: 'results',
      results: { results: Array.from({ length: 200 }, (_, i) => success(BigInt(i) * 977n)) },
    },
  },
  { response: { $case: 'results', results: { results: [] } } },
  {
    response: {
      $case: 'results',
      results: {
        results: [
          success(1n),
          {
            requestId: 2,
            outcome: {
              $case: 'error',
              error: {
                code: StreamingCode.STREAMING_CODE_CHANNEL_FENCED,
                cause: 'x',
                retryable: false,
              },
            },
          },
        ],
      },
    },
  },
  { response: { $case: 'opened', opened: { serverId: 9n } } },
  { response: { $case: 'closed', closed: { error: undefined } } },
];

describe('produce codec', () => {
  it('encodes produce requests to the bytes of the generated encoder', () => {
    for (const r of requests) expect(encodeProduceRequest(r)).toEqual(generated(r));
  });

  it('encodes produce requests in parts: the same bytes, large payloads as views of their memory', () => {
    for (const r of requests) {
      for (const from of [1, 100, 4096, 1 << 20]) {
        const parts = encodeProduceRequestParts(r, from);
        expect(Buffer.concat(parts).equals(generated(r))).toBe(true);
        const messages =
          r.request?.$case === 'produce'
            ? [r.request.produce]
            : r.request?.$case === 'produceBatch'
              ? r.request.produceBatch.messages
              : [];
        for (const m of messages) {
          const payload = m.message?.payload;
          if (payload === undefined || payload.length < from || payload.length === 0) continue;
          // Not copied: one part is the payload's memory itself.
          expect(
            parts.some(
              (p) =>
                p.buffer === payload.buffer &&
                p.byteOffset === payload.byteOffset &&
                p.length === payload.length,
            ),
          ).toBe(true);
        }
      }
    }
    // A plain Uint8Array (not a Buffer) view in the middle of a larger one stays a view too.
    const backing = new Uint8Array(10_000).fill(5);
    const view = backing.subarray(1000, 9000);
    const r: ProduceRequest = {
      request: {
        $case: 'produce',
        produce: {
          requestId: 3,
          vchannel: 'v',
          message: { payload: view as Buffer, properties: {} },
          sequence: 12,
        },
      },
    };
    const parts = encodeProduceRequestParts(r);
    expect(Buffer.concat(parts).equals(generated(r))).toBe(true);
    expect(parts.some((p) => p.buffer === backing.buffer && p.byteOffset === 1000)).toBe(true);
    // The plain encoder is unaffected by a parts encoding before it.
    expect(encodeProduceRequest(r).equals(generated(r))).toBe(true);
  });

  it('decodes produce requests like the generated decoder, payloads as views of the frame', () => {
    for (const r of requests) {
      const bytes = generated(r);
      expect(decodeProduceRequest(bytes)).toEqual(ProduceRequest.decode(bytes));
    }
    const bytes = generated(requests[0] as ProduceRequest);
    const decoded = decodeProduceRequest(bytes).request;
    if (decoded?.$case !== 'produce') throw new Error('expected produce');
    expect(decoded.produce.message?.payload.buffer).toBe(bytes.buffer);
  });

  it('decodes runs of the same vchannel name, and names that change, like the generated decoder', () => {
    const long = 'n'.repeat(300);
    const names = ['a', 'a', 'b', 'a', '', '', 'é-x', 'é-x', long, long, 'a'];
    const batch = (vchannels: string[]): Buffer =>
      encodeProduceRequest({
        request: {
          $case: 'produceBatch',
          produceBatch: {
            messages: vchannels.map((vchannel, i) => ({
              requestId: i + 1,
              vchannel,
              message: undefined,
              sequence: 0,
            })),
          },
        },
      });
    const frame = batch(names);
    expect(decodeProduceRequest(frame)).toEqual(ProduceRequest.decode(frame));
    // The remembered name is a copy: memory of an earlier frame that changes afterwards (a
    // reused buffer) does not make a different name look like the remembered one.
    const first = batch(['same']);
    expect(decodeProduceRequest(first)).toEqual(ProduceRequest.decode(first));
    const at = first.indexOf('same');
    first.write('samf', at);
    const other = batch(['samf']);
    expect(decodeProduceRequest(other)).toEqual(ProduceRequest.decode(other));
  });

  it('falls back to the generated decoder for fields it does not know', () => {
    const small: ProduceRequest = {
      request: {
        $case: 'produce',
        produce: {
          requestId: 1,
          vchannel: 'v',
          message: { payload: Buffer.from([1]), properties: {} },
          sequence: 0,
        },
      },
    };
    const bytes = generated(small);
    expect(bytes[1]).toBeLessThan(0x80);
    // Append an unknown varint field 15 inside the produce message and fix the length.
    const inner = Buffer.concat([bytes.subarray(2), Buffer.from([15 << 3, 1])]);
    const frame = Buffer.concat([Buffer.from([18, inner.length]), inner]);
    expect(decodeProduceRequest(frame)).toEqual(ProduceRequest.decode(frame));
  });

  it('refuses request ids, sequences and message ids that are not uint64 values below 2^53', () => {
    for (const bad of [-1, 1.5, 2 ** 53, Number.NaN]) {
      const badId: ProduceRequest = {
        request: {
          $case: 'produce',
          produce: { requestId: bad, vchannel: '', message: undefined, sequence: 0 },
        },
      };
      expect(() => encodeProduceRequest(badId)).toThrow(/requestId/);
      const badSeq: ProduceRequest = {
        request: {
          $case: 'produce',
          produce: { requestId: 1, vchannel: '', message: undefined, sequence: bad },
        },
      };
      expect(() => encodeProduceRequest(badSeq)).toThrow(/sequence/);
      const badResult: ProduceResponse = {
        response: { $case: 'result', result: { ...success(1n), requestId: bad } },
      };
      expect(() => encodeProduceResponse(badResult)).toThrow(/requestId/);
      const badMessageId: ProduceResponse = {
        response: {
          $case: 'result',
          result: {
            requestId: 1,
            outcome: {
              $case: 'success',
              success: {
                id: { segmentId: 0, entryId: bad },
                timeTick: 1n,
                lastConfirmedId: undefined,
              },
            },
          },
        },
      };
      expect(() => encodeProduceResponse(badMessageId)).toThrow(/entryId/);
    }
  });

  it('round-trips sequences at every varint length up to 2^53 - 1', () => {
    const values = [1, 127, 128, 2 ** 28 - 1, 2 ** 28, 2 ** 32 - 1, 2 ** 32];
    for (let bits = 35; bits <= 53; bits++) values.push(2 ** bits - 1, 2 ** (bits - 1) + 5);
    for (const sequence of values) {
      const r: ProduceRequest = {
        request: {
          $case: 'produce',
          produce: { requestId: 9, vchannel: 'v', message: undefined, sequence },
        },
      };
      const bytes = encodeProduceRequest(r);
      expect(bytes).toEqual(generated(r));
      expect(decodeProduceRequest(bytes)).toEqual(r);
    }
  });

  it('leaves a sequence or request id of 2^53 or more to the generated decoder, which refuses it', () => {
    const twoTo53 = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10];
    // requestId 1, then field 4 = 2^53; then field 1 = 2^53.
    for (const inner of [Buffer.from([8, 1, 32, ...twoTo53]), Buffer.from([8, ...twoTo53])]) {
      const frame = Buffer.concat([Buffer.from([18, inner.length]), inner]);
      expect(() => ProduceRequest.decode(frame)).toThrow();
      expect(() => decodeProduceRequest(frame)).toThrow();
    }
    // A result (field 2) whose request id is 2^53.
    const result = Buffer.from([18, 9, 8, ...twoTo53]);
    expect(() => ProduceResponse.decode(result)).toThrow();
    expect(() => decodeProduceResponse(result)).toThrow();
  });

  it('round-trips uint64 values at every varint length', () => {
    const values = [0n, 1n, 127n, 128n, 2n ** 28n - 1n, 2n ** 28n, 2n ** 32n - 1n, 2n ** 32n];
    for (let bits = 35n; bits <= 64n; bits++) values.push(2n ** bits - 1n, 2n ** (bits - 1n) + 5n);
    for (const v of values) {
      const r: ProduceResponse = {
        response: {
          $case: 'result',
          result: {
            // A request id is below 2^53 (see the sequence test for its varints).
            requestId: Number(v & (2n ** 53n - 1n)),
            outcome: {
              $case: 'success',
              success: {
                id: { segmentId: Number(v & (2n ** 53n - 1n)), entryId: Number(v >> 11n) },
                timeTick: v,
                lastConfirmedId: undefined,
              },
            },
          },
        },
      };
      const bytes = encodeProduceResponse(r);
      expect(bytes).toEqual(generatedResponse(r));
      expect(decodeProduceResponse(bytes)).toEqual(r);
    }
  });

  it('decodes a last-confirmed id with the bytes of the id as the same object', () => {
    const id = { segmentId: 3, entryId: 77 };
    const frame = encodeProduceResponse({
      response: {
        $case: 'results',
        results: {
          results: [
            {
              requestId: 1,
              outcome: { $case: 'success', success: { id, timeTick: 5n, lastConfirmedId: id } },
            },
            {
              requestId: 2,
              outcome: {
                $case: 'success',
                success: { id, timeTick: 6n, lastConfirmedId: { segmentId: 3, entryId: 76 } },
              },
            },
          ],
        },
      },
    });
    const decoded = decodeProduceResponse(frame);
    expect(decoded).toEqual(ProduceResponse.decode(frame));
    const r = decoded.response?.$case === 'results' ? decoded.response.results.results : [];
    const [same, other] = r.map((x) =>
      x.outcome?.$case === 'success' ? x.outcome.success : undefined,
    );
    expect(same?.lastConfirmedId).toBe(same?.id);
    expect(other?.lastConfirmedId).not.toBe(other?.id);
    expect(other?.lastConfirmedId).toEqual({ segmentId: 3, entryId: 76 });
  });

  it('encodes and decodes produce responses like the generated code', () => {
    for (const r of responses) {
      const bytes = generatedResponse(r);
      expect(encodeProduceResponse(r)).toEqual(bytes);
      expect(decodeProduceResponse(bytes)).toEqual(ProduceResponse.decode(bytes));
    }
  });
});
