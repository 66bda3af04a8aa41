import { describe, expect, it } from 'vitest';
import { decodeRpcStatus, encodeRpcStatus, typeUrlOf } from './index.js';

describe('google.rpc.Status in grpc-status-details-bin', () => {
  it('encodes the standard field layout byte for byte', () => {
    const bytes = encodeRpcStatus({
      code: 5,
      message: 'x',
      details: [{ typeUrl: 't', value: Uint8Array.from([1]) }],
    });
    // code (1, varint) 5; message (2) "x"; details (3) Any { type_url (1) "t", value (2) [1] }.
    expect(Buffer.from(bytes).toString('hex')).toBe('08051201781a060a0174120101');
  });

  it('round-trips and skips fields it does not know', () => {
    const status = {
      code: 9,
      message: 'FAILED_PRECONDITION: term 3 is stale',
      details: [
        {
          typeUrl: typeUrlOf('woodstream.common.v1.StreamingError'),
          value: Uint8Array.from([8, 4]),
        },
        { typeUrl: typeUrlOf('google.rpc.DebugInfo'), value: new Uint8Array(0) },
      ],
    };
    const bytes = Buffer.concat([
      Buffer.from(encodeRpcStatus(status)),
      // An unknown field 7 (varint 1), as a newer peer might add.
      Buffer.from([0x38, 0x01]),
    ]);
    expect(decodeRpcStatus(bytes)).toEqual(status);
    expect(() => decodeRpcStatus(Buffer.from([0x12, 0x05, 0x61]))).toThrow();
  });
});
