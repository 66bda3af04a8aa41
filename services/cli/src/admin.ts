import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { intOption, stringOption, UsageError, type ParsedArgs } from './args.js';
import type { CliIo } from './cli.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9091';

export const ADMIN_USAGE = `woodstream admin <command> [--admin-url URL] [--token-file PATH] [--json]

commands:
  cluster                      coordinator, nodes, channels by state, balance settings
  nodes                        streaming nodes: state, health, load, vchannels, channels
  channels                     pchannels: state, term, node, vchannels, task
  move <channel> <nodeId>      move a channel to a node now; add --wait to wait until it is there
  freeze <nodeId>              the node gets no channels; its channels move away (persisted)
  unfreeze <nodeId>            the node may get channels again
  balance status               whether rebalancing is on
  balance suspend | resume     stop or restart moving healthy channels (persisted)
  balance trigger              run a balance round now

options:
  --admin-url URL      the coordinator's admin HTTP address (default ${DEFAULT_ADMIN_URL};
                       env WOODSTREAM_ADMIN_URL)
  --token-file PATH    a file holding the admin token (env WOODSTREAM_ADMIN_TOKEN_FILE)
  --timeout-ms N       time limit of each request (default 10000) and, with --wait, of the move
                       (default 60000)
  --json               print the API's JSON answer instead of a table`;

/** An admin API failure, already worded for the person at the terminal. */
export class AdminCallError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'AdminCallError';
  }
}

interface AdminTarget {
  url: string;
  token: string | undefined;
  tokenSource: string | undefined;
  timeoutMs: number;
  signal: AbortSignal;
}

interface ApiError {
  code?: string;
  message?: string;
  retryable?: boolean;
  leaderId?: string | null;
}

/** One admin call; resolves to the parsed JSON body of a 2xx answer, throws AdminCallError else. */
async function request(
  target: AdminTarget,
  method: 'GET' | 'PUT' | 'POST',
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (target.token !== undefined) headers['authorization'] = `Bearer ${target.token}`;
  let response: Response;
  try {
    response = await fetch(`${target.url}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.any([target.signal, AbortSignal.timeout(target.timeoutMs)]),
    });
  } catch (err) {
    if (target.signal.aborted) throw err;
    if (err instanceof DOMException && err.name === 'TimeoutError') {
      throw new AdminCallError(
        `no answer from the admin API at ${target.url} within ${target.timeoutMs} ms`,
        undefined,
      );
    }
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new AdminCallError(
      `cannot reach the admin API at ${target.url} (${cause?.code ?? cause?.message ?? String(err)}). ` +
        'Is the coordinator running? Point at it with --admin-url http://HOST:PORT or ' +
        `WOODSTREAM_ADMIN_URL (default ${DEFAULT_ADMIN_URL}).`,
      undefined,
    );
  }
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new AdminCallError(
      `unexpected answer from ${target.url}${path}: HTTP ${response.status} without JSON. Is --admin-url the coordinator's admin port?`,
      undefined,
    );
  }
  if (response.ok) return json as Record<string, unknown>;
  const error = json as ApiError;
  throw new AdminCallError(describeError(target, response.status, error), error.code);
}

function describeError(target: AdminTarget, status: number, error: ApiError): string {
  const message = error.message ?? `HTTP ${status}`;
  switch (error.code) {
    case 'UNAUTHORIZED':
      return (
        'the admin API needs a token: pass --token-file PATH (a file holding the token) or set ' +
        'WOODSTREAM_ADMIN_TOKEN_FILE'
      );
    case 'FORBIDDEN':
      return `the admin API refused the token from ${target.tokenSource ?? 'the token file'}: it is not the admin token`;
    case 'NOT_LEADER':
      return error.leaderId
        ? `${target.url} is a standby coordinator; the active one is ${error.leaderId}: point --admin-url at its admin port`
        : `${target.url} is a standby coordinator and no active one is known yet; try again shortly`;
    case undefined:
    default:
      return error.retryable === true ? `${message} (temporary: try again)` : message;
  }
}

async function resolveTarget(
  args: ParsedArgs,
  io: CliIo,
  signal: AbortSignal,
  timeoutFallbackMs: number,
): Promise<AdminTarget> {
  const env = io.env ?? {};
  const url = stringOption(
    args,
    'admin-url',
    env['WOODSTREAM_ADMIN_URL'] || DEFAULT_ADMIN_URL,
  ).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+$/.test(url)) {
    throw new UsageError(`--admin-url must look like http://HOST:PORT, got '${url}'`);
  }
  const tokenFile = args.options.has('token-file')
    ? stringOption(args, 'token-file')
    : env['WOODSTREAM_ADMIN_TOKEN_FILE'] || undefined;
  let token: string | undefined;
  if (tokenFile !== undefined) {
    try {
      token = (await readFile(tokenFile, { encoding: 'utf8', signal })).trim();
    } catch (err) {
      throw new AdminCallError(
        `cannot read the token file ${tokenFile}: ${err instanceof Error ? err.message : String(err)}`,
        undefined,
      );
    }
    if (token === '') throw new AdminCallError(`the token file ${tokenFile} is empty`, undefined);
  }
  return {
    url,
    token,
    tokenSource: tokenFile,
    timeoutMs: intOption(args, 'timeout-ms', timeoutFallbackMs, [100, 3_600_000]),
    signal,
  };
}

/** Columns padded to the widest cell; the last column is not padded. */
export function formatTable(header: readonly string[], rows: readonly string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

function nodeIdArg(args: ParsedArgs, index: number, command: string): number {
  const text = args.positional[index];
  if (text === undefined) throw new UsageError(`woodstream admin ${command}: give a node id`);
  const id = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(id)) {
    throw new UsageError(`woodstream admin ${command}: node id must be a number, got '${text}'`);
  }
  return id;
}

interface NodeJson {
  id: number;
  address: string;
  state: string;
  healthy: boolean;
  load: number;
  channels: string[];
  /** Absent from coordinators older than the vchannel registry. */
  vchannelCount?: number;
}

interface ChannelJson {
  name: string;
  state: string;
  term: number;
  nodeId: number | null;
  vchannelCount?: number;
  task: { status: string; failedAttempts: number; lastError: string | null };
}

interface OperationJson {
  id: string;
  channel: string;
  targetNodeId: number;
  state: string;
  term: number | null;
  reason: string | null;
}

/** `admin ...`: the coordinator's admin REST API. Returns the exit code. */
export async function admin(args: ParsedArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  const [command, ...rest] = args.positional;
  const asJson = args.options.get('json') === true;
  const print = (body: unknown, human: () => void): void => {
    if (asJson) io.out(JSON.stringify(body));
    else human();
  };
  switch (command) {
    case undefined:
      io.err(ADMIN_USAGE);
      return 2;
    case 'help':
      io.out(ADMIN_USAGE);
      return 0;
    case 'cluster': {
      const target = await resolveTarget(args, io, signal, 10_000);
      const body = await request(target, 'GET', '/api/v1/cluster');
      print(body, () => {
        const c = body as {
          coordinator: { id: string; role: string; leaderId: string | null };
          assignmentVersion: { global: number; local: number };
          nodes: { total: number; healthy: number; frozen: number; stopping: number };
          channels: { total: number; byState: Record<string, number> };
          balance: { allowRebalance: boolean; frozenNodeIds: number[] };
        };
        const states = Object.entries(c.channels.byState)
          .filter(([, n]) => n > 0)
          .map(([state, n]) => `${n} ${state}`)
          .join(', ');
        const leader =
          c.coordinator.role === 'ACTIVE'
            ? ''
            : `, active: ${c.coordinator.leaderId ?? 'none known'}`;
        for (const l of formatTable(
          ['', ''],
          [
            ['coordinator', `${c.coordinator.id} (${c.coordinator.role}${leader})`],
            [
              'nodes',
              `${c.nodes.total} (${c.nodes.healthy} healthy, ${c.nodes.frozen} frozen, ${c.nodes.stopping} stopping)`,
            ],
            ['channels', `${c.channels.total} (${states || 'none'})`],
            ['assignment', `version ${c.assignmentVersion.global}.${c.assignmentVersion.local}`],
            ['rebalance', c.balance.allowRebalance ? 'on' : 'suspended'],
            ['frozen nodes', c.balance.frozenNodeIds.join(', ') || 'none'],
          ],
        ).slice(1))
          io.out(l);
      });
      return 0;
    }
    case 'nodes': {
      const target = await resolveTarget(args, io, signal, 10_000);
      const body = await request(target, 'GET', '/api/v1/nodes');
      print(body, () => {
        const nodes = body['nodes'] as NodeJson[];
        if (nodes.length === 0) {
          io.out('no streaming node is registered');
          return;
        }
        for (const l of formatTable(
          ['ID', 'ADDRESS', 'STATE', 'HEALTHY', 'LOAD', 'VCHANNELS', 'CHANNELS'],
          nodes.map((n) => [
            String(n.id),
            n.address,
            n.state,
            n.healthy ? 'yes' : 'no',
            String(n.load),
            n.vchannelCount === undefined ? '-' : String(n.vchannelCount),
            n.channels.join(' '),
          ]),
        ))
          io.out(l);
      });
      return 0;
    }
    case 'channels': {
      const target = await resolveTarget(args, io, signal, 10_000);
      const body = await request(target, 'GET', '/api/v1/channels');
      print(body, () => {
        for (const l of formatTable(
          ['NAME', 'STATE', 'TERM', 'NODE', 'VCHANNELS', 'TASK', 'LAST ERROR'],
          (body['channels'] as ChannelJson[]).map((c) => [
            c.name,
            c.state,
            String(c.term),
            c.nodeId === null ? '-' : String(c.nodeId),
            c.vchannelCount === undefined ? '-' : String(c.vchannelCount),
            c.task.failedAttempts > 0
              ? `${c.task.status} (${c.task.failedAttempts} failed)`
              : c.task.status,
            c.task.lastError ?? '',
          ]),
        ))
          io.out(l);
      });
      return 0;
    }
    case 'move': {
      const channel = rest[0];
      if (channel === undefined) {
        throw new UsageError('woodstream admin move: give a channel and a node id');
      }
      const nodeId = nodeIdArg(args, 2, 'move');
      const wait = args.options.get('wait') === true;
      const target = await resolveTarget(args, io, signal, 10_000);
      const started = await request(
        target,
        'POST',
        `/api/v1/channels/${encodeURIComponent(channel)}/move`,
        { targetNodeId: nodeId },
      );
      let operation = started['operation'] as OperationJson;
      if (wait) {
        operation = await waitForOperation(
          { ...target, timeoutMs: 10_000 },
          operation,
          intOption(args, 'timeout-ms', 60_000, [100, 3_600_000]),
        );
      }
      print(operation, () => {
        if (operation.state === 'done') {
          io.out(
            `${operation.channel} is on node ${operation.targetNodeId} at term ${operation.term} (operation ${operation.id})`,
          );
        } else if (operation.state !== 'failed') {
          io.out(
            `moving ${operation.channel} to node ${operation.targetNodeId}: ${operation.state} ` +
              `(operation ${operation.id}; add --wait to wait for it)`,
          );
        }
      });
      if (operation.state === 'failed') {
        io.err(
          `woodstream admin move: moving ${operation.channel} to node ${operation.targetNodeId} failed: ${operation.reason ?? 'unknown reason'}`,
        );
        return 1;
      }
      return 0;
    }
    case 'freeze':
    case 'unfreeze': {
      const nodeId = nodeIdArg(args, 1, command);
      const target = await resolveTarget(args, io, signal, 10_000);
      const body = await request(target, 'PUT', `/api/v1/nodes/${nodeId}/state`, {
        state: command === 'freeze' ? 'frozen' : 'active',
      });
      print(body, () =>
        io.out(
          command === 'freeze'
            ? `node ${nodeId} frozen: it gets no channels and its ${String(body['load'])} channel(s) move to other nodes`
            : `node ${nodeId} active: it may get channels again`,
        ),
      );
      return 0;
    }
    case 'balance': {
      const action = rest[0];
      const target = await resolveTarget(args, io, signal, 10_000);
      let body: Record<string, unknown>;
      switch (action) {
        case 'status':
          body = await request(target, 'GET', '/api/v1/balance');
          break;
        case 'suspend':
        case 'resume':
          body = await request(target, 'PUT', '/api/v1/balance', {
            allowRebalance: action === 'resume',
          });
          break;
        case 'trigger':
          body = await request(target, 'POST', '/api/v1/balance/trigger');
          print(body, () => io.out('balance round triggered'));
          return 0;
        case undefined:
        default:
          throw new UsageError(
            `woodstream admin balance: expected status, suspend, resume or trigger; got '${action ?? ''}'`,
          );
      }
      print(body, () => {
        const frozen = (body['frozenNodeIds'] as number[]).join(', ') || 'none';
        io.out(
          `rebalance ${body['allowRebalance'] === true ? 'on' : 'suspended'}; frozen nodes: ${frozen}`,
        );
      });
      return 0;
    }
    default:
      throw new UsageError(
        `woodstream admin: unknown command '${command}'; run 'woodstream admin help'`,
      );
  }
}

const POLL_INTERVAL_MS = 200;

/** Polls the operation until it is done or failed, or `timeoutMs` passed (then throws). */
async function waitForOperation(
  target: AdminTarget,
  operation: OperationJson,
  timeoutMs: number,
): Promise<OperationJson> {
  const deadline = Date.now() + timeoutMs;
  let current = operation;
  while (current.state !== 'done' && current.state !== 'failed') {
    if (Date.now() >= deadline) {
      throw new AdminCallError(
        `moving ${current.channel} to node ${current.targetNodeId} is still ${current.state} after ${timeoutMs} ms ` +
          `(operation ${current.id}); it goes on in the coordinator`,
        undefined,
      );
    }
    await delay(POLL_INTERVAL_MS, undefined, { signal: target.signal });
    current = (await request(
      target,
      'GET',
      `/api/v1/operations/${encodeURIComponent(current.id)}`,
    )) as unknown as OperationJson;
  }
  return current;
}
