import { Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { WoodstreamError } from '@woodstream/common';
import {
  decodeRpcStatus,
  encodeRpcStatus,
  STATUS_DETAILS_TRAILER,
  StreamingCode,
  StreamingError as StreamingErrorProto,
  typeUrlOf,
} from '@woodstream/proto';

/** Stable names of the streaming codes, as documented in docs/errors.md. */
export type StreamingErrorCode =
  | 'CHANNEL_NOT_EXIST'
  | 'CHANNEL_FENCED'
  | 'ON_SHUTDOWN'
  | 'UNMATCHED_CHANNEL_TERM'
  | 'IGNORED_OPERATION'
  | 'INNER'
  | 'INVALID_ARGUMENT'
  | 'RESOURCE_EXHAUSTED'
  | 'UNRECOVERABLE'
  | 'UNAVAILABLE';

interface CodeInfo {
  proto: StreamingCode;
  retryable: boolean;
  grpc: GrpcStatus;
}

/**
 * One row per code: its wire value, whether a client may retry (after re-routing where the code
 * says the channel is elsewhere), and the gRPC status it travels with.
 */
export const STREAMING_CODES: Readonly<Record<StreamingErrorCode, CodeInfo>> = {
  CHANNEL_NOT_EXIST: {
    proto: StreamingCode.STREAMING_CODE_CHANNEL_NOT_EXIST,
    retryable: true,
    grpc: GrpcStatus.NOT_FOUND,
  },
  CHANNEL_FENCED: {
    proto: StreamingCode.STREAMING_CODE_CHANNEL_FENCED,
    retryable: true,
    grpc: GrpcStatus.FAILED_PRECONDITION,
  },
  ON_SHUTDOWN: {
    proto: StreamingCode.STREAMING_CODE_ON_SHUTDOWN,
    retryable: true,
    grpc: GrpcStatus.UNAVAILABLE,
  },
  UNMATCHED_CHANNEL_TERM: {
    proto: StreamingCode.STREAMING_CODE_UNMATCHED_CHANNEL_TERM,
    retryable: true,
    grpc: GrpcStatus.FAILED_PRECONDITION,
  },
  IGNORED_OPERATION: {
    proto: StreamingCode.STREAMING_CODE_IGNORED_OPERATION,
    retryable: false,
    grpc: GrpcStatus.ABORTED,
  },
  INNER: { proto: StreamingCode.STREAMING_CODE_INNER, retryable: false, grpc: GrpcStatus.INTERNAL },
  INVALID_ARGUMENT: {
    proto: StreamingCode.STREAMING_CODE_INVALID_ARGUMENT,
    retryable: false,
    grpc: GrpcStatus.INVALID_ARGUMENT,
  },
  RESOURCE_EXHAUSTED: {
    proto: StreamingCode.STREAMING_CODE_RESOURCE_EXHAUSTED,
    retryable: true,
    grpc: GrpcStatus.RESOURCE_EXHAUSTED,
  },
  UNRECOVERABLE: {
    proto: StreamingCode.STREAMING_CODE_UNRECOVERABLE,
    retryable: false,
    grpc: GrpcStatus.DATA_LOSS,
  },
  UNAVAILABLE: {
    proto: StreamingCode.STREAMING_CODE_UNAVAILABLE,
    retryable: true,
    grpc: GrpcStatus.UNAVAILABLE,
  },
};

const BY_PROTO = new Map<StreamingCode, StreamingErrorCode>(
  (Object.entries(STREAMING_CODES) as [StreamingErrorCode, CodeInfo][]).map(([name, info]) => [
    info.proto,
    name,
  ]),
);

/** An error of the streaming service with a stable code; `retryable` comes from the code. */
export class StreamingError extends WoodstreamError {
  readonly retryable: boolean;
  constructor(
    readonly code: StreamingErrorCode,
    message: string,
    options?: ErrorOptions & { retryAfterMs?: number },
  ) {
    super(message, options);
    this.retryable = STREAMING_CODES[code].retryable;
  }

  /** Whether the code means "this node is not (or no longer) the channel's owner": re-route. */
  get isWrongNode(): boolean {
    return (
      this.code === 'CHANNEL_NOT_EXIST' ||
      this.code === 'UNMATCHED_CHANNEL_TERM' ||
      this.code === 'CHANNEL_FENCED' ||
      this.code === 'ON_SHUTDOWN'
    );
  }

  toProto(): StreamingErrorProto {
    return {
      code: STREAMING_CODES[this.code].proto,
      cause: this.message,
      retryable: this.retryable,
    };
  }

  static fromProto(proto: StreamingErrorProto | undefined): StreamingError {
    const code = (proto && BY_PROTO.get(proto.code)) ?? 'INNER';
    return new StreamingError(code, proto?.cause ?? 'unknown streaming error');
  }
}

/**
 * Trailer that carried the encoded StreamingError on its own before errors went into the gRPC
 * status details (STATUS_DETAILS_TRAILER). Still sent and read, so that versions on either side
 * of that change understand each other during an upgrade.
 */
export const STREAMING_ERROR_TRAILER = 'woodstream-streaming-error-bin';

/** The Any type URL of a StreamingError in the status details. */
export const STREAMING_ERROR_TYPE_URL = typeUrlOf('woodstream.common.v1.StreamingError');

/**
 * Turns any error into a StreamingError; unknown errors become INNER (not retryable). WAL errors
 * keep their retry semantics: a transient storage or metadata failure is UNAVAILABLE (back off,
 * retry), a failed writer closes the channel's WAL at this term (CHANNEL_FENCED: re-route; the
 * outcome of what was pending is unknown, as after a node loss).
 */
export function toStreamingError(err: unknown): StreamingError {
  if (err instanceof StreamingError) return err;
  if (err instanceof WoodstreamError) {
    switch (err.code) {
      case 'WAL_FENCED':
      case 'WAL_WRITER_FAILED':
        return new StreamingError('CHANNEL_FENCED', err.message, { cause: err });
      case 'WAL_ENTRY_TOO_LARGE':
      case 'WAL_INVALID_ARGUMENT':
      case 'WAL_INVALID_NAME':
      case 'WAL_TRUNCATED':
        return new StreamingError('INVALID_ARGUMENT', err.message, { cause: err });
      case 'WAL_CORRUPT':
        return new StreamingError('UNRECOVERABLE', err.message, { cause: err });
      case 'WAL_CLOSED':
        return new StreamingError('ON_SHUTDOWN', err.message, { cause: err });
      case 'WAL_STORAGE_UNAVAILABLE':
      case 'WAL_METADATA_UNAVAILABLE':
      case 'WAL_CONFLICT':
        return new StreamingError('UNAVAILABLE', err.message, { cause: err });
      case 'WAL_DISK_FULL':
        return new StreamingError('RESOURCE_EXHAUSTED', err.message, { cause: err });
      default:
        return new StreamingError('INNER', err.message, { cause: err });
    }
  }
  return new StreamingError('INNER', err instanceof Error ? err.message : String(err), {
    cause: err,
  });
}

/**
 * A gRPC ServiceError carrying the StreamingError in the gRPC status details (a google.rpc.Status
 * in `grpc-status-details-bin` whose details hold the StreamingError), for `callback(err)` /
 * `call.emit('error')`.
 */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const se = toStreamingError(err);
  const code = STREAMING_CODES[se.code].grpc;
  const details = `${se.code}: ${se.message}`;
  const metadata = new Metadata();
  metadata.set(
    STATUS_DETAILS_TRAILER,
    Buffer.from(
      encodeRpcStatus({
        code,
        message: details,
        details: [
          {
            typeUrl: STREAMING_ERROR_TYPE_URL,
            value: StreamingErrorProto.encode(se.toProto()).finish(),
          },
        ],
      }),
    ),
  );
  // Also on its own, for clients and coordinators from before status details (one release).
  metadata.set(
    STREAMING_ERROR_TRAILER,
    Buffer.from(StreamingErrorProto.encode(se.toProto()).finish()),
  );
  return { code, details, metadata };
}

/** The StreamingError in a failure's status details (or the older trailer), if any. */
function streamingErrorOf(se: Partial<ServiceError> | undefined): StreamingError | undefined {
  try {
    const status = se?.metadata?.get(STATUS_DETAILS_TRAILER)[0];
    if (status instanceof Buffer) {
      const any = decodeRpcStatus(status).details.find(
        (d) => d.typeUrl === STREAMING_ERROR_TYPE_URL,
      );
      if (any !== undefined) return StreamingError.fromProto(StreamingErrorProto.decode(any.value));
    }
    const raw = se?.metadata?.get(STREAMING_ERROR_TRAILER)[0];
    if (raw instanceof Buffer) return StreamingError.fromProto(StreamingErrorProto.decode(raw));
  } catch {
    // A damaged trailer is treated like none.
  }
  return undefined;
}

/**
 * Rebuilds the typed error from a gRPC failure. Without a StreamingError in the status details,
 * UNAVAILABLE and DEADLINE_EXCEEDED (the node went away) become ON_SHUTDOWN, so clients
 * re-route; anything else becomes INNER.
 */
export function fromServiceError(err: unknown): StreamingError {
  const se = err as Partial<ServiceError> | undefined;
  const typed = streamingErrorOf(se);
  if (typed !== undefined) return typed;
  if (se?.code === GrpcStatus.UNAVAILABLE || se?.code === GrpcStatus.DEADLINE_EXCEEDED) {
    return new StreamingError('ON_SHUTDOWN', se.details ?? 'the server is unavailable', {
      cause: err,
    });
  }
  if (se?.code === GrpcStatus.CANCELLED) {
    return new StreamingError('ON_SHUTDOWN', 'the call was cancelled', { cause: err });
  }
  return new StreamingError(
    'INNER',
    se?.details ?? (err instanceof Error ? err.message : String(err)),
    { cause: err },
  );
}
