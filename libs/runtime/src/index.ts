// Public entry of @woodstream/runtime.
export { runUntilSignal } from './lifecycle.js';
export { createLogger } from './logger.js';
export type { Logger } from './logger.js';
export { startNodeApp } from './node-app.js';
export type { NodeApp, NodeSettings } from './node-app.js';
export {
  CoordinatorSchema,
  MetadataSchema,
  NodeSchema,
  StandaloneSchema,
  StorageSchema,
  WalSchema,
} from './schemas.js';
export type { CoordinatorConfig, NodeConfig, StandaloneConfig } from './schemas.js';
export { openMetadataStore, openWal } from './stores.js';
export {
  configFromArgs,
  coordinatorMain,
  nodeMain,
  reportStartError,
  standaloneMain,
} from './mains.js';
export { startCoordinatorApp } from './coordinator-app.js';
export type { CoordinatorApp } from './coordinator-app.js';
export { startStandalone } from './standalone-app.js';
export type { StandaloneApp, StandaloneSettings } from './standalone-app.js';
