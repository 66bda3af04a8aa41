/** A parsed command line: positional words and `--name value` / `--name=value` / `--flag` options. */
export interface ParsedArgs {
  positional: string[];
  options: Map<string, string | true>;
}

/** Options that take no value. */
const FLAGS = new Set(['follow', 'help', 'json', 'wait']);

export function parseArgs(argv: readonly string[]): ParsedArgs {
  const positional: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    if (eq >= 0) options.set(name, arg.slice(eq + 1));
    else if (FLAGS.has(name) || i + 1 >= argv.length || (argv[i + 1] as string).startsWith('--'))
      options.set(name, true);
    else options.set(name, argv[++i] as string);
  }
  return { positional, options };
}

/** A command-line mistake: printed with a hint, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * Rejects options `command` does not know and words it does not take: a misspelt option must not
 * be ignored silently (a `--cout 5` would otherwise read forever).
 */
export function checkArgs(args: ParsedArgs, command: string, known: readonly string[]): void {
  for (const name of args.options.keys()) {
    if (!known.includes(name))
      throw new UsageError(
        `woodstream ${command}: unknown option --${name} (options: ${known.map((k) => `--${k}`).join(' ')})`,
      );
  }
  if (args.positional.length > 0)
    throw new UsageError(
      `woodstream ${command}: unexpected argument '${args.positional.join(' ')}'`,
    );
}

export function stringOption(args: ParsedArgs, name: string, fallback?: string): string {
  const v = args.options.get(name);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new UsageError(`--${name} is required`);
  }
  if (v === true) throw new UsageError(`--${name} needs a value`);
  return v;
}

export function intOption(
  args: ParsedArgs,
  name: string,
  fallback: number,
  range: [number, number],
): number {
  const v = args.options.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v === true || !Number.isInteger(n) || n < range[0] || n > range[1]) {
    throw new UsageError(`--${name} must be an integer from ${range[0]} to ${range[1]}`);
  }
  return n;
}

/** `12:345` → {segmentId: 12, entryId: 345}. */
export function parseMessageId(text: string): { segmentId: number; entryId: number } {
  const m = /^(\d+):(\d+)$/.exec(text);
  if (m === null)
    throw new UsageError(`invalid message id '${text}': expected SEGMENT:ENTRY, e.g. 0:42`);
  return { segmentId: Number(m[1]), entryId: Number(m[2]) };
}

export function formatMessageId(id: { segmentId: number; entryId: number }): string {
  return `${id.segmentId}:${id.entryId}`;
}
