import type { MessageID as MessageIdProto } from '@woodstream/proto';
import { StreamingError } from '@woodstream/streaming';

/**
 * The position of a message in its pchannel's log, ordered by (segmentId, entryId). Both parts
 * are safe integers: a log would need 2^53 entries before this representation loses precision,
 * and the SDK refuses (INNER) such an id from the wire rather than round it.
 */
export interface MessageId {
  readonly segmentId: number;
  readonly entryId: number;
}

/** Where a read starts. */
export type ReadFrom =
  /** The first message still in the log. */
  | 'earliest'
  /** Only messages appended after the consumer opened. */
  | 'latest'
  /** The first message after this id (exclusive). */
  | { readonly after: MessageId }
  /** This id and everything after it (inclusive). */
  | { readonly from: MessageId };

/** Server-side filters of a read; all of them must match (AND). */
export type ReadFilter =
  | { readonly timeTickGt: bigint }
  | { readonly timeTickGte: bigint }
  | { readonly messageTypes: readonly ('data' | 'timeTick')[] };

/** A message to append. */
export interface AppendMessage {
  readonly vchannel: string;
  readonly payload: Uint8Array;
  readonly properties?: Readonly<Record<string, string>>;
  /** Route to this pchannel instead of the one the vchannel hashes to. */
  readonly pchannel?: string;
}

/** What an acknowledged append returns. */
export interface AppendResult {
  readonly messageId: MessageId;
  /** Hybrid time tick the node stamped on the message. */
  readonly timeTick: bigint;
  /** A position from which a reader sees every message with a larger time tick. */
  readonly lastConfirmedId: MessageId;
}

/** One event of a read, in the order the node delivered them. */
export type ReadEvent =
  | {
      readonly type: 'message';
      readonly messageId: MessageId;
      readonly timeTick: bigint;
      readonly vchannel: string;
      readonly payload: Uint8Array;
      readonly properties: Readonly<Record<string, string>>;
      readonly lastConfirmedId: MessageId;
    }
  /**
   * Every message of the vchannel stored before this tick has been delivered: on this owner, no
   * later message has a tick <= `timeTick`. Ticks are ordered within the log, not across node
   * clocks: after a move to a node whose clock is behind, a message may carry a smaller tick than
   * an earlier time-tick event (docs/design/streaming.md). Nothing is skipped either way.
   */
  | { readonly type: 'timeTick'; readonly timeTick: bigint };

/** Counters of the client's retry behaviour, for tests and metrics. */
export interface ClientStats {
  /** Appends acknowledged by a node. */
  appended: number;
  /**
   * Sends of a message after its first send: after a lost result, a broken stream or a
   * retryable error. A node answers a re-send of a message it stored with the stored result
   * (same producer id and sequence); only past its dedup window can one store a second copy.
   */
  retries: number;
  /** Requests whose stream broke before their result arrived (a subset of the retry causes). */
  unknownOutcomes: number;
  /** Producer and consumer streams (re)opened after the first open of each. */
  reopens: number;
  /** report_error frames written to the coordinator. */
  reportedErrors: number;
  /** Times the discovery stream to the coordinator was re-established. */
  discoveryReconnects: number;
  /** Producer and consumer streams that went to an in-process node, without gRPC. */
  inProcessStreams: number;
}

export function newStats(): ClientStats {
  return {
    appended: 0,
    retries: 0,
    unknownOutcomes: 0,
    reopens: 0,
    reportedErrors: 0,
    discoveryReconnects: 0,
    inProcessStreams: 0,
  };
}

/**
 * Wire id → SDK id. The wire's parts are already numbers below 2^53 (a frame with larger ones
 * does not decode), so the decoded object is the id: nothing is allocated per message.
 */
export function fromProtoId(id: MessageIdProto | undefined, what: string): MessageId {
  if (id === undefined) throw new StreamingError('INNER', `the node sent no ${what}`);
  return id;
}

/** SDK id → wire id; rejects ids a caller made up that cannot be positions. */
export function toProtoId(id: MessageId, what: string): MessageIdProto {
  if (
    !Number.isSafeInteger(id.segmentId) ||
    !Number.isSafeInteger(id.entryId) ||
    id.segmentId < 0 ||
    id.entryId < 0
  ) {
    throw new StreamingError(
      'INVALID_ARGUMENT',
      `${what} must hold two non-negative integers below 2^53`,
    );
  }
  return { segmentId: id.segmentId, entryId: id.entryId };
}
