import { describe, expect, it } from 'vitest';
import { MessageID, StreamingCode, StreamingError, streamingCodeFromJSON } from './index.js';

describe('common.proto', () => {
  it('round-trips a MessageID with 64-bit ids through the binary encoding', () => {
    const id = { segmentId: 2n ** 53n + 7n, entryId: 18_446_744_073_709_551_615n };
    const bytes = MessageID.encode(id).finish();
    expect(MessageID.decode(bytes)).toEqual(id);
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
    const bytes = MessageID.encode({ segmentId: 300n, entryId: 1n }).finish();
    expect(() => MessageID.decode(bytes.subarray(0, bytes.length - 1))).toThrow();
  });
});
