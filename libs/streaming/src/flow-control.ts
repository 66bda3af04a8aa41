import type { Http2Server, Http2Session } from 'node:http2';
import type { ChannelOptions, Server } from '@grpc/grpc-js';
import { assert } from '@woodstream/common';

// HTTP/2 flow control of our gRPC streams.
//
// HTTP/2's default receive window is 64 KiB per stream and per connection. A sender may have no
// more than that in flight before the receiver's WINDOW_UPDATE comes back, so a produce stream
// of 64 KiB messages waits one round trip between the processes for every message: measured
// here, a bidi echo of 64 KiB messages between two processes ran at about 270 MB/s with the
// default window and 1.2–1.4 GB/s with a 4 MiB one. The window is also the bound on what one
// stream (and one connection) may hold unread at the receiver, so it stays a limit: the node's
// own backpressure (it stops reading a producer with too many unanswered messages) holds,
// because a paused stream stops returning window.
//
// grpc-js 1.14 applies `grpc-node.flow_control_window` to client connections only; a server
// always advertises the default. `raiseServerFlowControlWindow` sets the server's advertised
// stream window and, per accepted connection, its connection window, through two fields of
// grpc-js's Server that are not public API (`commonServerOptions`, `http2Servers`). A test
// checks the advertised windows, so a grpc-js upgrade that moves them is noticed.

export const FLOW_CONTROL_WINDOW = {
  default: 4 * 1024 * 1024,
  min: 64 * 1024,
  /** HTTP/2 allows at most 2^31 - 1; far below it, a window is memory a peer may fill. */
  max: 64 * 1024 * 1024,
} as const;

function checkWindow(bytes: number): void {
  assert(
    Number.isInteger(bytes) && bytes >= FLOW_CONTROL_WINDOW.min && bytes <= FLOW_CONTROL_WINDOW.max,
    `flow control window is an integer within ${FLOW_CONTROL_WINDOW.min}–${FLOW_CONTROL_WINDOW.max} bytes`,
  );
}

/** Channel options that give a client's connections a receive window of `bytes`. */
export function clientFlowControlOptions(bytes: number): ChannelOptions {
  checkWindow(bytes);
  return { 'grpc-node.flow_control_window': bytes };
}

interface ServerInternals {
  commonServerOptions?: { settings?: Record<string, unknown> };
  http2Servers?: Map<Http2Server, unknown>;
}

/**
 * Gives `server` a receive window of `bytes` per stream and per connection. Call it after
 * `new Server()` and before `bindAsync`; call `applyToListeners` once `bindAsync` has returned.
 * Returns false (and changes nothing) when this grpc-js does not have the fields it sets.
 */
export function raiseServerFlowControlWindow(
  server: Server,
  bytes: number,
): { applied: boolean; applyToListeners: () => void } {
  checkWindow(bytes);
  const internals = server as unknown as ServerInternals;
  const options = internals.commonServerOptions;
  if (options === undefined || !(internals.http2Servers instanceof Map))
    return { applied: false, applyToListeners: () => undefined };
  // Advertised in the SETTINGS frame of every new connection: each stream's initial window.
  options.settings = { ...options.settings, initialWindowSize: bytes };
  const hooked = new WeakSet<Http2Server>();
  const onSession = (session: Http2Session): void => {
    // The connection's own window starts at 64 KiB whatever the settings say.
    try {
      session.setLocalWindowSize(bytes);
    } catch {
      // The session closed before this ran; nothing to tune.
    }
  };
  return {
    applied: true,
    applyToListeners: () => {
      for (const listener of internals.http2Servers?.keys() ?? []) {
        if (hooked.has(listener)) continue;
        hooked.add(listener);
        listener.on('session', onSession);
      }
    },
  };
}
