import { connect, type ClientHttp2Session } from 'node:http2';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  clientFlowControlOptions,
  FLOW_CONTROL_WINDOW,
  raiseServerFlowControlWindow,
} from './flow-control.js';

const HTTP2_DEFAULT_WINDOW = 65_535;
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function bind(server: Server): Promise<number> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  cleanups.push(() => server.forceShutdown());
  return port;
}

/** Connects a plain HTTP/2 client and returns it once the server's SETTINGS arrived. */
async function connectRaw(port: number): Promise<ClientHttp2Session> {
  const session = connect(`http://127.0.0.1:${port}`);
  cleanups.push(() => session.destroy());
  await new Promise<void>((resolve, reject) => {
    session.once('remoteSettings', () => resolve());
    session.once('error', reject);
  });
  return session;
}

/** Waits until `check` holds, polling the session state (in-process, no I/O), or fails after `ms`. */
async function until(check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setImmediate(r));
  }
}

describe('HTTP/2 flow control windows', () => {
  it('a server advertises the raised stream window and opens its connection window', async () => {
    const server = new Server();
    const window = 1024 * 1024;
    const tuned = raiseServerFlowControlWindow(server, window);
    expect(tuned.applied).toBe(true);
    const port = await bind(server);
    tuned.applyToListeners();
    const session = await connectRaw(port);
    expect(session.remoteSettings.initialWindowSize).toBe(window);
    // The connection window grows by a WINDOW_UPDATE the server sends once it has the session.
    await until(() => (session.state.remoteWindowSize ?? 0) >= window, 5_000);
  });

  it('without it, grpc-js keeps the 64 KiB HTTP/2 default (what the helper exists to change)', async () => {
    const port = await bind(new Server());
    const session = await connectRaw(port);
    expect(session.remoteSettings.initialWindowSize).toBe(HTTP2_DEFAULT_WINDOW);
    // Give a stray WINDOW_UPDATE every chance to arrive: a ping round trip comes after it.
    await new Promise<void>((resolve, reject) =>
      session.ping((err) => (err ? reject(err) : resolve())),
    );
    expect(session.state.remoteWindowSize).toBe(HTTP2_DEFAULT_WINDOW);
  });

  it('applying to listeners twice hooks each listener once', async () => {
    const server = new Server();
    const tuned = raiseServerFlowControlWindow(server, FLOW_CONTROL_WINDOW.default);
    await bind(server);
    tuned.applyToListeners();
    tuned.applyToListeners();
    const internals = server as unknown as { http2Servers: Map<NodeJS.EventEmitter, unknown> };
    for (const listener of internals.http2Servers.keys())
      expect(listener.listenerCount('session')).toBe(2); // grpc-js's own and ours
  });

  it('client options carry the window; out-of-range windows are refused', () => {
    expect(clientFlowControlOptions(2 * 1024 * 1024)).toEqual({
      'grpc-node.flow_control_window': 2 * 1024 * 1024,
    });
    expect(() => clientFlowControlOptions(1000)).toThrow(/flow control window/);
    expect(() => raiseServerFlowControlWindow(new Server(), FLOW_CONTROL_WINDOW.max + 1)).toThrow(
      /flow control window/,
    );
  });
});
