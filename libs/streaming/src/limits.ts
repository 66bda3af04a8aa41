// Message size limits shared by the node (what it accepts and sends) and the client (what it
// must be able to receive), so that anything a node acknowledges can also be read back.

const MiB = 1024 * 1024;

export const MESSAGE_BYTES = {
  /** A node's default payload limit (`maxMessageBytes`). */
  default: 4 * MiB,
  /** The largest payload limit a node can be configured with. */
  max: 64 * MiB,
  /**
   * Room above the payload limit for the rest of a gRPC message: properties, ids, the frame of a
   * consume response. A node's gRPC send and receive limits are its payload limit plus this.
   */
  frameOverhead: 1 * MiB,
} as const;

/**
 * The gRPC receive limit a client needs for any message a node may send: the largest payload
 * limit plus the overhead. (grpc-js defaults to 4 MiB, below a 4 MiB payload with its frame.)
 */
export const CLIENT_MAX_RECEIVE_MESSAGE_BYTES = MESSAGE_BYTES.max + MESSAGE_BYTES.frameOverhead;
