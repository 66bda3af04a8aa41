// Public entry of @woodstream/streaming: what the coordinator, the node and the client share.
export {
  fnv1a32,
  MAX_CHANNEL_NAME_LENGTH,
  pchannelForVChannel,
  pchannelName,
  validateChannelName,
} from './channels.js';
export {
  fromServiceError,
  STREAMING_CODES,
  STREAMING_ERROR_TRAILER,
  StreamingError,
  toServiceError,
  toStreamingError,
} from './errors.js';
export type { StreamingErrorCode } from './errors.js';
export { streamingKeys } from './layout.js';
export type { NodeSession, PChannelMeta, PChannelState } from './layout.js';
export { CLIENT_MAX_RECEIVE_MESSAGE_BYTES, MESSAGE_BYTES } from './limits.js';
export { PROP, RESERVED_PREFIX } from './properties.js';
export { LOGICAL_BITS, makeTimeTick, physicalMs, TimeTickAllocator } from './time-tick.js';
export {
  clientFlowControlOptions,
  FLOW_CONTROL_WINDOW,
  raiseServerFlowControlWindow,
} from './flow-control.js';
export {
  decodeStatus,
  encodeStatus,
  FRAMED_PREFACE,
  FramedClientCall,
  FrameFormatError,
  framedCodecOf,
  framedMethod,
  FrameReader,
  FramedServerCall,
  frameHeader,
  FrameType,
  serveFramedConnection,
  splitAddress,
  STATUS_LINGER_MS,
} from './framed-stream.js';
export type {
  DuplexLike,
  Frame,
  FramedClientOptions,
  GrpcMethodDefinition,
  FramedCodec,
  FramedMethods,
  FramedServerOptions,
} from './framed-stream.js';
export { SharedPortListener } from './shared-port.js';
