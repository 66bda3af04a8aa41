import { WoodstreamError } from '@woodstream/common';
import { StreamingError, type StreamingErrorCode } from '@woodstream/streaming';

/** Stable codes of the admin HTTP API; one row each in docs/errors.md ("Admin HTTP codes"). */
export type HttpErrorCode =
  | 'INVALID_REQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'NODE_NOT_FOUND'
  | 'CHANNEL_NOT_FOUND'
  | 'OPERATION_NOT_FOUND'
  | 'REJECTED'
  | 'CONFLICT'
  | 'NOT_LEADER'
  | 'UNAVAILABLE'
  | 'BUSY'
  | 'TIMEOUT'
  | 'INTERNAL';

interface HttpCodeInfo {
  status: number;
  retryable: boolean;
}

/** One row per code: its HTTP status and whether the same request may succeed later. */
export const HTTP_ERROR_CODES: Readonly<Record<HttpErrorCode, HttpCodeInfo>> = {
  INVALID_REQUEST: { status: 400, retryable: false },
  UNAUTHORIZED: { status: 401, retryable: false },
  FORBIDDEN: { status: 403, retryable: false },
  NOT_FOUND: { status: 404, retryable: false },
  NODE_NOT_FOUND: { status: 404, retryable: false },
  CHANNEL_NOT_FOUND: { status: 404, retryable: false },
  OPERATION_NOT_FOUND: { status: 404, retryable: false },
  REJECTED: { status: 409, retryable: false },
  CONFLICT: { status: 409, retryable: true },
  NOT_LEADER: { status: 503, retryable: true },
  UNAVAILABLE: { status: 503, retryable: true },
  BUSY: { status: 503, retryable: true },
  TIMEOUT: { status: 504, retryable: true },
  INTERNAL: { status: 500, retryable: false },
};

/** The body of every admin API error. */
export interface HttpErrorBody {
  code: HttpErrorCode;
  message: string;
  retryable: boolean;
  /** NOT_LEADER only: the active coordinator's id, when this one knows it. */
  leaderId?: string | null;
}

/** An error an admin route answers with; status and retryable come from the code. */
export class HttpApiError extends Error {
  readonly status: number;
  readonly retryable: boolean;
  /** NOT_LEADER only: the active coordinator's id, when known (null: no leader known). */
  readonly leaderId?: string | null;
  constructor(
    readonly code: HttpErrorCode,
    message: string,
    options?: ErrorOptions & { leaderId?: string | null },
  ) {
    super(message, options);
    this.name = 'HttpApiError';
    this.status = HTTP_ERROR_CODES[code].status;
    this.retryable = HTTP_ERROR_CODES[code].retryable;
    if (options?.leaderId !== undefined) this.leaderId = options.leaderId;
  }

  toBody(): HttpErrorBody {
    const body: HttpErrorBody = {
      code: this.code,
      message: this.message,
      retryable: this.retryable,
    };
    if (this.leaderId !== undefined) body.leaderId = this.leaderId;
    return body;
  }
}

/**
 * The one table from the coordinator's StreamingError codes to admin codes. Malformed input is
 * rejected by the route schemas before the coordinator sees it, so an INVALID_ARGUMENT that
 * still comes back is about state (e.g. the target node is frozen): 409, not 400.
 */
const FROM_STREAMING: Readonly<Record<StreamingErrorCode, HttpErrorCode>> = {
  CHANNEL_NOT_EXIST: 'CHANNEL_NOT_FOUND',
  INVALID_ARGUMENT: 'REJECTED',
  IGNORED_OPERATION: 'CONFLICT',
  CHANNEL_FENCED: 'CONFLICT',
  UNMATCHED_CHANNEL_TERM: 'CONFLICT',
  ON_SHUTDOWN: 'UNAVAILABLE',
  RESOURCE_EXHAUSTED: 'BUSY',
  INNER: 'INTERNAL',
  UNRECOVERABLE: 'INTERNAL',
  UNAVAILABLE: 'UNAVAILABLE',
};

/**
 * Maps any error to an HttpApiError. Fails closed: errors without a known code become
 * INTERNAL (not retryable); other Woodstream errors (e.g. metadata store timeouts) keep their
 * retryable flag as UNAVAILABLE or INTERNAL.
 */
export function toHttpApiError(err: unknown): HttpApiError {
  if (err instanceof HttpApiError) return err;
  if (err instanceof StreamingError) {
    return new HttpApiError(FROM_STREAMING[err.code], err.message, { cause: err });
  }
  if (err instanceof WoodstreamError) {
    return new HttpApiError(err.retryable ? 'UNAVAILABLE' : 'INTERNAL', err.message, {
      cause: err,
    });
  }
  if (err instanceof DOMException && err.name === 'TimeoutError') {
    return new HttpApiError('TIMEOUT', 'the request took too long; try again', { cause: err });
  }
  return new HttpApiError('INTERNAL', err instanceof Error ? err.message : String(err), {
    cause: err,
  });
}
