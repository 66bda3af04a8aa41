// Public entry of @woodstream/runtime.
export { runUntilSignal } from './lifecycle.js';
export { createLogger } from './logger.js';
export type { Logger } from './logger.js';
export { startNodeApp } from './node-app.js';
export type { NodeApp } from './node-app.js';
export { MetadataSchema, NodeSchema, StorageSchema, WalSchema } from './schemas.js';
export type { NodeConfig } from './schemas.js';
export { openMetadataStore, openWal } from './stores.js';
export { configFromArgs, nodeMain, reportStartError } from './mains.js';
