/** Where the CLI writes; injected so the command logic can be tested without a process. */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

/** Exit codes of the `woodstream` command. */
export const ExitCode = {
  ok: 0,
  /** The command ran but could not do what was asked. */
  failure: 1,
  /** The command line itself is wrong. */
  usage: 2,
} as const;

const RUN_TARGETS = ['standalone', 'coordinator', 'node'] as const;

const USAGE = `usage: woodstream <command> [options]

commands:
  run standalone     coordinator + one streaming node in one process (embedded metadata, local storage)
  run coordinator    the streaming coordinator
  run node           a streaming node
  help               show this text`;

/** Runs one CLI invocation and returns the process exit code. */
export function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, target, ...rest] = argv;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.out(USAGE);
      return Promise.resolve(command === undefined ? ExitCode.usage : ExitCode.ok);
    case 'run': {
      if (!RUN_TARGETS.includes(target as (typeof RUN_TARGETS)[number]) || rest.length > 0) {
        io.err(
          `woodstream run: expected one of ${RUN_TARGETS.join(', ')}; got '${argv.slice(1).join(' ')}'`,
        );
        io.err("run 'woodstream help' for the list of commands");
        return Promise.resolve(ExitCode.usage);
      }
      io.err(
        `woodstream run ${target}: the streaming service is not part of this build yet; nothing was started.`,
      );
      io.err(
        'This checkout has the workspace, wire contract and test harness only. Run `npm test` to exercise them.',
      );
      return Promise.resolve(ExitCode.failure);
    }
    default:
      io.err(`woodstream: unknown command '${command}'`);
      io.err("run 'woodstream help' for the list of commands");
      return Promise.resolve(ExitCode.usage);
  }
}
