import { credentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { intOption } from '@woodstream/common';
import {
  CLIENT_MAX_RECEIVE_MESSAGE_BYTES,
  clientFlowControlOptions,
  FLOW_CONTROL_WINDOW,
} from '@woodstream/streaming';
import type { InProcessNode } from './in-process.js';

/** Options of {@link StreamingClient.connect}. Every limit has a default and a hard maximum. */
export interface StreamingClientOptions {
  /** host:port of the coordinator's gRPC server. */
  coordinator: string;
  /** Aborts the connect; once connected it has no further effect (use `close()`). */
  signal?: AbortSignal;
  /** @default insecure (plaintext) */
  credentials?: ChannelCredentials;
  /** Passed to every gRPC channel the client opens. */
  channelOptions?: ChannelOptions;
  /**
   * HTTP/2 receive window of the client's connections: how much a node may send on a consume
   * stream (or the coordinator on discovery) before the client reads it. A 64 KiB window
   * makes large messages wait one round trip each. @default 4 MiB (64 KiB – 64 MiB)
   */
  flowControlWindowBytes?: number;
  /** How long `connect` waits for the first assignment snapshot. @default 30000 (max 600000) */
  connectTimeoutMs?: number;
  /** How long opening a producer or consumer on a node may take. @default 10000 (max 120000) */
  openTimeoutMs?: number;
  /** How long `close` waits for each close handshake before cancelling. @default 5000 (max 60000) */
  closeTimeoutMs?: number;
  /** First delay of every retry loop. @default 100 (max 10000) */
  minBackoffMs?: number;
  /** Largest delay of every retry loop. @default 5000 (max 60000) */
  maxBackoffMs?: number;
  /** Appends admitted and not yet acknowledged, per pchannel; more wait. @default 1024 (max 65536) */
  maxInflightAppends?: number;
  /** Payload + property bytes admitted and not yet acknowledged, per pchannel. @default 64 MiB (max 1 GiB) */
  maxInflightBytes?: number;
  /** Sends of one message before its append fails with the last error. @default 100 (max 10000) */
  maxAppendAttempts?: number;
  /** Default for `read`: events buffered before the stream is paused. @default 1024 (max 65536) */
  maxBufferedMessages?: number;
  /**
   * Produce streams to nodes go over the framed stream (plain TCP on the node's port, the same
   * messages and statuses as gRPC, without HTTP/2's per-message work) instead of gRPC. Off with
   * TLS credentials (the framed stream has no TLS) and for nodes behind an HTTP/2-only proxy.
   * @default true
   */
  framedProduce?: boolean;
  /**
   * Nodes running in this process (standalone): produce and consume streams to their
   * addresses skip gRPC and call the node directly. Discovery still uses the coordinator.
   * @default none
   */
  inProcessNodes?: readonly InProcessNode[];
}

/** The options with every default applied and every bound checked. */
export interface ResolvedOptions {
  readonly coordinator: string;
  readonly credentials: ChannelCredentials;
  readonly channelOptions: ChannelOptions;
  readonly connectTimeoutMs: number;
  readonly openTimeoutMs: number;
  readonly closeTimeoutMs: number;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly maxInflightAppends: number;
  readonly maxInflightBytes: number;
  readonly maxAppendAttempts: number;
  readonly maxBufferedMessages: number;
  readonly framedProduce: boolean;
  readonly inProcessNodes: ReadonlyMap<string, InProcessNode>;
}

export const MAX_BUFFERED_MESSAGES_LIMIT = 65_536;

/** Applies all defaults in one place; throws RangeError on an out-of-range or conflicting option. */
export function withDefaults(options: StreamingClientOptions): ResolvedOptions {
  if (typeof options.coordinator !== 'string' || options.coordinator.length === 0) {
    throw new RangeError('coordinator must be host:port');
  }
  const minBackoffMs = intOption('minBackoffMs', options.minBackoffMs, 100, 1, 10_000);
  const maxBackoffMs = intOption('maxBackoffMs', options.maxBackoffMs, 5_000, 1, 60_000);
  if (maxBackoffMs < minBackoffMs) throw new RangeError('maxBackoffMs must be >= minBackoffMs');
  if (options.framedProduce !== undefined && typeof options.framedProduce !== 'boolean')
    throw new RangeError('framedProduce must be a boolean');
  const channelCredentials = options.credentials ?? credentials.createInsecure();
  return {
    coordinator: options.coordinator,
    credentials: channelCredentials,
    framedProduce: (options.framedProduce ?? true) && !channelCredentials._isSecure(),
    // An explicit channel option wins over the window setting and the receive limit.
    channelOptions: {
      // Whatever a node acknowledged must be readable back, up to the largest node limit.
      'grpc.max_receive_message_length': CLIENT_MAX_RECEIVE_MESSAGE_BYTES,
      ...clientFlowControlOptions(
        intOption(
          'flowControlWindowBytes',
          options.flowControlWindowBytes,
          FLOW_CONTROL_WINDOW.default,
          FLOW_CONTROL_WINDOW.min,
          FLOW_CONTROL_WINDOW.max,
        ),
      ),
      ...options.channelOptions,
    },
    connectTimeoutMs: intOption('connectTimeoutMs', options.connectTimeoutMs, 30_000, 1, 600_000),
    openTimeoutMs: intOption('openTimeoutMs', options.openTimeoutMs, 10_000, 1, 120_000),
    closeTimeoutMs: intOption('closeTimeoutMs', options.closeTimeoutMs, 5_000, 1, 60_000),
    minBackoffMs,
    maxBackoffMs,
    maxInflightAppends: intOption(
      'maxInflightAppends',
      options.maxInflightAppends,
      1024,
      1,
      65_536,
    ),
    maxInflightBytes: intOption(
      'maxInflightBytes',
      options.maxInflightBytes,
      64 * 1024 * 1024,
      1,
      1024 * 1024 * 1024,
    ),
    maxAppendAttempts: intOption('maxAppendAttempts', options.maxAppendAttempts, 100, 1, 10_000),
    maxBufferedMessages: intOption(
      'maxBufferedMessages',
      options.maxBufferedMessages,
      1024,
      1,
      MAX_BUFFERED_MESSAGES_LIMIT,
    ),
    inProcessNodes: new Map((options.inProcessNodes ?? []).map((n) => [n.address, n])),
  };
}
