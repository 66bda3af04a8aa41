import { describe, expect, it } from 'vitest';
import { MessageID, StreamingCode, StreamingError, streamingCodeFromJSON } from './index.js';

describe('common.proto', () => {
  it('round-trips a MessageID with ids up to 2^53 - 1 and refuses larger ones', () => {
    const id = { segmentId: 2 ** 40 + 7, entryId: Number.MAX_SAFE_INTEGER };
    const bytes = MessageID.encode(id).finish();
    expect(MessageID.decode(bytes)).toEqual(id);
    // entry_id = 2^53 (field 2, varint): does not decode.
    const big = Uint8Array.from([16, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    expect(() => MessageID.decode(big)).toThrow();
  });

  it('round-trips a StreamingError and keeps its code and retryable flag', () => {
    const err = {
      code: StreamingCode.STREAMING_CODE_CHANNEL_FENCED,
      cause: 'writer epoch 3 fenced by epoch 4',
      retryable: false,
    };
    expect(StreamingError.decode(StreamingError.encode(err).finish())).toEqual(err);
  });

  it('maps unknown code names to UNRECOGNIZED instead of a valid code', () => {
    expect(streamingCodeFromJSON('STREAMING_CODE_CHANNEL_FENCED')).toBe(
      StreamingCode.STREAMING_CODE_CHANNEL_FENCED,
    );
    expect(streamingCodeFromJSON('NO_SUCH_CODE')).toBe(StreamingCode.UNRECOGNIZED);
  });

  it('rejects a truncated frame instead of returning a partial message', () => {
    const bytes = MessageID.encode({ segmentId: 300, entryId: 1 }).finish();
    expect(() => MessageID.decode(bytes.subarray(0, bytes.length - 1))).toThrow();
  });
});
