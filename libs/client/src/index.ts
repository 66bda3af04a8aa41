// Public entry of @woodstream/client: the SDK applications use to append to and read from a
// Woodstream streaming cluster.
export { StreamingClient } from './streaming-client.js';
export type { CallOptions, ReadOptions } from './streaming-client.js';
export type { Subscription } from './resumable-consumer.js';
export type { StreamingClientOptions } from './options.js';
export type { InProcessNode } from './in-process.js';
export type {
  AppendMessage,
  AppendResult,
  ClientStats,
  MessageId,
  ReadEvent,
  ReadFilter,
  ReadFrom,
} from './types.js';
