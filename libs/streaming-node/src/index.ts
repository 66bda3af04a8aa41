// Public entry of @woodstream/streaming-node.
export { ChannelWal } from './channel-wal.js';
export type { AppendResult, ChannelWalOptions, SafeTick } from './channel-wal.js';
export { createHandlerService } from './handler-service.js';
export type { HandlerLimits } from './handler-service.js';
export { createManagerService } from './manager-service.js';
export { NodeTelemetry } from './node-telemetry.js';
export type { ChannelCounters } from './node-telemetry.js';
export { nodeOptionsWithDefaults, StreamingNode } from './streaming-node.js';
export type { NodeLogger, StreamingNodeOptions } from './streaming-node.js';
export { WalManager } from './wal-manager.js';
export type { ChannelEventLog } from './wal-manager.js';
