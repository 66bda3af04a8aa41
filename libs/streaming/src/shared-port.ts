import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { ServerCredentials, type Server } from '@grpc/grpc-js';
import { assert } from '@woodstream/common';
import {
  FRAMED_PREFACE,
  serveFramedConnection,
  type FramedServerOptions,
} from './framed-stream.js';

/** Limits of connections that have not yet shown which protocol they speak. */
const UNDECIDED = {
  /** At most this many at once; more are closed at once. */
  maxConnections: 1024,
  /** A connection that sends nothing for this long is closed. */
  timeoutMs: 10_000,
} as const;

/** How long close() lets a framed connection that is sending its status finish. */
const CLOSE_GRACE_MS = 1_000;

/**
 * One listening port shared by two protocols: gRPC (HTTP/2) for everything, and the framed
 * stream (framed-stream.ts) for the calls it serves. The first bytes of a connection tell them
 * apart: the framed preface, or anything else, which goes to grpc-js as is.
 */
export class SharedPortListener {
  private readonly net: NetServer;
  private readonly injector: ReturnType<Server['createConnectionInjector']>;
  // Invariant: holds the framed connections not yet closed; emptied by close().
  private readonly framed = new Set<Socket>();
  private undecided = 0;
  private isClosed = false;

  constructor(
    grpc: Server,
    framed: FramedServerOptions,
    /** Framed connections open at once; more are closed as they arrive. */
    private readonly maxFramedConnections = 4096,
  ) {
    assert(
      Number.isSafeInteger(maxFramedConnections) && maxFramedConnections > 0,
      'the framed connection limit is positive',
    );
    this.injector = grpc.createConnectionInjector(ServerCredentials.createInsecure());
    this.net = createServer({ noDelay: true }, (socket) => this.route(socket, framed));
  }

  /** Listens on host:port (0: a free one); returns the bound port. */
  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.net.once('error', reject);
      this.net.listen({ host, port }, () => {
        this.net.off('error', reject);
        resolve();
      });
    });
    const address = this.net.address();
    assert(address !== null && typeof address === 'object', 'a TCP listener has an address');
    return address.port;
  }

  /**
   * Accepts no more connections and closes the framed ones: a call that already sent its status
   * gets CLOSE_GRACE_MS to deliver it; the others are cancelled now. gRPC connections are the
   * gRPC server's to close.
   */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.net.close();
    for (const socket of this.framed) {
      if (socket.writableEnded) setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
      else socket.destroy();
    }
    this.framed.clear();
  }

  private route(socket: Socket, framed: FramedServerOptions): void {
    if (this.isClosed || this.undecided >= UNDECIDED.maxConnections) {
      socket.destroy();
      return;
    }
    this.undecided += 1;
    let seen: Buffer = Buffer.alloc(0);
    let isDecided = false;
    const decide = (): void => {
      isDecided = true;
      this.undecided -= 1;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('close', onClose);
    };
    const timer = setTimeout(() => {
      decide();
      socket.destroy();
    }, UNDECIDED.timeoutMs);
    const onClose = (): void => {
      if (!isDecided) decide();
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (!isDecided && (chunk = socket.read() as Buffer | null) !== null) {
        seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
        const n = Math.min(seen.length, FRAMED_PREFACE.length);
        if (!seen.subarray(0, n).equals(FRAMED_PREFACE.subarray(0, n))) {
          // Not ours: grpc-js reads the bytes already taken from the socket's buffer first.
          decide();
          socket.unshift(seen);
          this.injector.injectConnection(socket);
          return;
        }
        if (seen.length >= FRAMED_PREFACE.length) {
          decide();
          if (this.isClosed || this.framed.size >= this.maxFramedConnections)
            return void socket.destroy();
          this.framed.add(socket);
          socket.setKeepAlive(true, 30_000);
          socket.once('close', () => this.framed.delete(socket));
          const rest = seen.subarray(FRAMED_PREFACE.length);
          // On the next tick: removing the 'readable' listener queued a tick of the socket's own
          // that resumes reading if a 'data' listener exists by then. Were the call already
          // paused (a window filled by the first chunk), that would read on, unbounded.
          process.nextTick(() => serveFramedConnection(socket, rest, framed));
          return;
        }
      }
    };
    socket.on('readable', onReadable);
    socket.on('close', onClose);
    socket.on('error', () => undefined); // 'close' follows; the protocol's owner handles the rest
  }
}
