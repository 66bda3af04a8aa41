// Public entry of @woodstream/streaming-coordinator: the streaming coordinator (node discovery,
// pchannel assignment, balancing, leadership) and its AssignmentService gRPC handlers.
export { createAssignmentServiceHandlers, toFullAssignment } from './assignment-service.js';
export { planBalance } from './balance-policy.js';
export type { PolicyChannel, PolicyInput, PolicyMove } from './balance-policy.js';
export { noopLogger } from './coordinator-logger.js';
export type { CoordinatorLogger } from './coordinator-logger.js';
export { resolveCoordinatorOptions } from './coordinator-options.js';
export type { CoordinatorOptions, ResolvedCoordinatorOptions } from './coordinator-options.js';
export type { MoveOperation, MoveOperationState } from './move-operations.js';
export { GrpcNodeManagerClientFactory } from './node-manager-client.js';
export type {
  GrpcNodeManagerClientFactoryOptions,
  NodeCallOptions,
  NodeManagerClient,
  NodeManagerClientFactory,
  NodeStatus,
} from './node-manager-client.js';
export {
  beginAssign,
  completeAssign,
  markUnavailable,
  MAX_HISTORY_ENTRIES,
} from './pchannel-transitions.js';
export { ACTIVATIONS_KEY, StreamingCoordinator } from './streaming-coordinator.js';
export type {
  AssignmentSnapshot,
  AssignmentVersion,
  ChannelView,
  CoordinatorDeps,
  CoordinatorRole,
  CoordinatorSettings,
  CoordinatorStatus,
  NodeView,
} from './streaming-coordinator.js';
