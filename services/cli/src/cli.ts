import { hostname } from 'node:os';
import { startTelemetry } from '@woodstream/observability';
import { coordinatorMain, nodeMain, standaloneMain } from '@woodstream/runtime';
import { admin } from './admin.js';
import { parseArgs, UsageError } from './args.js';
import { consume, produce } from './commands.js';
import { status } from './status.js';

/** Where the CLI reads and writes; injected so the command logic can be tested without a process. */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  /** Progress output (stderr on a terminal); absent when not wanted. */
  progress?(text: string): void;
  stdin?: NodeJS.ReadableStream;
  isTty?: boolean;
  env?: Record<string, string | undefined>;
  signal?: AbortSignal;
}

/** Exit codes of the `woodstream` command. */
export const ExitCode = {
  ok: 0,
  /** The command ran but could not do what was asked. */
  failure: 1,
  /** The command line itself is wrong. */
  usage: 2,
} as const;

const USAGE = `usage: woodstream <command> [options]

commands:
  run standalone     coordinator + one streaming node in one process (embedded metadata, local storage)
  run coordinator    the streaming coordinator
  run node           a streaming node
  produce --vchannel V [--count N --size BYTES] [--inflight N]
                     append --count synthetic messages, or one message per line of stdin;
                     prints each acknowledgement as a JSON line
  consume --vchannel V [--from earliest|latest|SEGMENT:ENTRY] [--count N] [--follow]
                     print messages as JSON lines; stops when caught up unless --follow
  status [--json]    nodes and the channels they hold
  admin <command>    cluster | nodes | channels | move <channel> <nodeId> [--wait] |
                     freeze <nodeId> | unfreeze <nodeId> | balance status|suspend|resume|trigger
                     through the coordinator's admin API (--admin-url, default
                     http://127.0.0.1:9091; --token-file PATH); 'woodstream admin help'
  help               show this text

common options:
  --coordinator HOST:PORT   the coordinator (default 127.0.0.1:19530)
  run *: --config FILE, --a.b=value flags, WOODSTREAM_* environment variables (docs/config.md)`;

/** Runs one CLI invocation and returns the process exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  const env = io.env ?? {};
  const signal = io.signal ?? new AbortController().signal;
  try {
    switch (command) {
      case undefined:
        io.err(USAGE);
        return ExitCode.usage;
      case 'help':
      case '--help':
      case '-h':
        io.out(USAGE);
        return ExitCode.ok;
      case 'run': {
        const [target, ...options] = rest;
        if (target === 'standalone')
          return await standaloneMain(options, env, (line) => io.out(line));
        if (target === 'coordinator') return await coordinatorMain(options, env);
        if (target === 'node') return await nodeMain(options, env);
        throw new UsageError(
          `woodstream run: expected one of standalone, coordinator, node; got '${rest.join(' ')}'`,
        );
      }
      case 'produce':
        return await traced(env, io, () =>
          produce(
            parseArgs(rest),
            { ...io, stdin: io.stdin ?? process.stdin, isTty: io.isTty ?? false },
            signal,
          ),
        );
      case 'consume':
        return await traced(env, io, () => consume(parseArgs(rest), io, signal));
      case 'status':
        return await status(parseArgs(rest), io);
      case 'admin':
        return await admin(parseArgs(rest), io, signal);
      default:
        throw new UsageError(`woodstream: unknown command '${command}'`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(err.message);
      io.err("run 'woodstream help' for the list of commands");
      return ExitCode.usage;
    }
    const code = (err as { code?: string }).code;
    io.err(
      `woodstream ${command ?? ''}: ${err instanceof Error ? err.message : String(err)}${code ? ` [${code}]` : ''}`,
    );
    return ExitCode.failure;
  }
}

/**
 * Runs a client command with tracing when OTEL_EXPORTER_OTLP_ENDPOINT is set: produced messages
 * then carry the CLI's span context, and the spans are flushed before the command returns.
 */
async function traced(
  env: Record<string, string | undefined>,
  io: CliIo,
  command: () => Promise<number>,
): Promise<number> {
  const endpoint = env['OTEL_EXPORTER_OTLP_ENDPOINT'] ?? '';
  if (endpoint === '') return command();
  const telemetry = startTelemetry({
    serviceName: 'woodstream-cli',
    serviceInstanceId: `${hostname()}:${process.pid}`,
    otlpTracesEndpoint: endpoint,
  });
  try {
    return await command();
  } finally {
    // Losing traces is not worth failing a command whose messages were acknowledged.
    await telemetry.shutdown({ signal: AbortSignal.timeout(10_000) }).catch((err: unknown) => {
      io.err(`woodstream: could not export traces to ${endpoint}: ${String(err)}`);
    });
  }
}
