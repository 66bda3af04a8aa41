// The standard gRPC rich-error trailer: `grpc-status-details-bin` holds a google.rpc.Status
// (code = 1, message = 2, repeated google.protobuf.Any details = 3; Any is type_url = 1,
// value = 2). Encoded by hand: two tiny messages do not justify a dependency on googleapis.
import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';

/** Metadata key of the rich error status, as every gRPC implementation names it. */
export const STATUS_DETAILS_TRAILER = 'grpc-status-details-bin';

/** One `google.protobuf.Any`: a message's full type URL and its encoded bytes. */
export interface AnyMessage {
  typeUrl: string;
  value: Uint8Array;
}

/** A `google.rpc.Status`. */
export interface RpcStatus {
  code: number;
  message: string;
  details: AnyMessage[];
}

/** The type URL of a message of ours in an Any: `type.googleapis.com/<full name>`. */
export function typeUrlOf(fullName: string): string {
  return `type.googleapis.com/${fullName}`;
}

export function encodeRpcStatus(status: RpcStatus): Uint8Array {
  const w = new BinaryWriter();
  if (status.code !== 0) w.uint32(8).int32(status.code);
  if (status.message !== '') w.uint32(18).string(status.message);
  for (const d of status.details) {
    w.uint32(26).fork();
    w.uint32(10).string(d.typeUrl);
    w.uint32(18).bytes(d.value);
    w.join();
  }
  return w.finish();
}

/** Decodes a `google.rpc.Status`; unknown fields are skipped. Throws on malformed bytes. */
export function decodeRpcStatus(bytes: Uint8Array): RpcStatus {
  const r = new BinaryReader(bytes);
  const status: RpcStatus = { code: 0, message: '', details: [] };
  while (r.pos < r.len) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        status.code = r.int32();
        break;
      case 2:
        status.message = r.string();
        break;
      case 3: {
        const end = r.uint32() + r.pos;
        const any: AnyMessage = { typeUrl: '', value: new Uint8Array(0) };
        while (r.pos < end) {
          const t = r.uint32();
          if (t >>> 3 === 1) any.typeUrl = r.string();
          else if (t >>> 3 === 2)
            any.value = new Uint8Array(r.bytes()); // a copy, not a view of the trailer
          else r.skip(t & 7);
        }
        status.details.push(any);
        break;
      }
      default:
        r.skip(tag & 7);
    }
  }
  return status;
}
