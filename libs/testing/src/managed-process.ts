import { spawn, type ChildProcess } from 'node:child_process';

/** Options for {@link ManagedProcess.spawn}. */
export interface SpawnOptions {
  /** Short label used in log lines and errors, e.g. `etcd` or `node-2`. */
  name: string;
  command: string;
  args?: readonly string[];
  cwd?: string;
  /** Added to (and overriding) the parent's environment. */
  env?: Record<string, string | undefined>;
  /** How many output lines to keep for failure reports. @default 2000 (max 100000) */
  maxLogLines?: number;
  /** Give the child a pipe on stdin (for processes that read input). @default false */
  pipeStdin?: boolean;
}

/** How a process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const MAX_LOG_LINES_LIMIT = 100_000;

// Every process this module started and that has not exited yet. They are killed when the
// test process exits, so a crashed or aborted test run leaves nothing behind.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/**
 * A child process owned by a test: output captured (bounded), stoppable by PID with a
 * grace period, and killed automatically when the test process exits.
 */
export class ManagedProcess {
  readonly name: string;
  readonly exited: Promise<ProcessExit>;
  // Invariant: lines.length <= maxLogLines (oldest dropped first).
  private readonly lines: string[] = [];
  private readonly maxLogLines: number;
  private readonly listeners = new Set<(line: string) => void>();
  private exitInfo: ProcessExit | undefined;

  private constructor(
    private readonly child: ChildProcess,
    options: SpawnOptions,
  ) {
    this.name = options.name;
    this.maxLogLines = Math.min(options.maxLogLines ?? 2000, MAX_LOG_LINES_LIMIT);
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        const parts = (partial + chunk).split('\n');
        partial = parts.pop() ?? '';
        for (const line of parts) this.push(line);
      });
      stream?.on('end', () => {
        if (partial) this.push(partial);
        partial = '';
      });
    }
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child);
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
      child.once('error', (err) => {
        live.delete(child);
        this.push(`[spawn error] ${err.message}`);
        this.exitInfo = { code: null, signal: null };
        resolve(this.exitInfo);
      });
    });
  }

  /** Starts `command` with piped output. Resolves once the OS has created the process. */
  static spawn(options: SpawnOptions): ManagedProcess {
    installExitHook();
    const child = spawn(options.command, [...(options.args ?? [])], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: [options.pipeStdin === true ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    live.add(child);
    return new ManagedProcess(child, options);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get stdin(): NodeJS.WritableStream | null {
    return this.child.stdin;
  }

  /** True until the process has exited. */
  get isRunning(): boolean {
    return this.exitInfo === undefined;
  }

  /** The captured output (stdout and stderr interleaved), newest last. */
  output(): string {
    return this.lines.join('\n');
  }

  /**
   * Resolves with the first output line matching `pattern` (lines already captured count).
   * Rejects when the process exits first or the time limit passes.
   */
  waitForOutput(pattern: RegExp, options: { timeoutMs: number }): Promise<RegExpMatchArray> {
    for (const line of this.lines) {
      const m = line.match(pattern);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.listeners.delete(onLine);
      };
      const onLine = (line: string): void => {
        const m = line.match(pattern);
        if (m) {
          cleanup();
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(this.failure(`no output matching ${pattern} within ${options.timeoutMs} ms`));
      }, options.timeoutMs);
      this.listeners.add(onLine);
      void this.exited.then((exit) => {
        if (!this.listeners.has(onLine)) return;
        cleanup();
        reject(this.failure(`exited (${describeExit(exit)}) before printing ${pattern}`));
      });
    });
  }

  /** Sends `signal` to the process (by its PID). No-op once it has exited. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.isRunning) this.child.kill(signal);
  }

  /**
   * Asks the process to stop with `signal`, waits up to `graceMs`, then SIGKILLs it.
   * Resolves with how it ended.
   */
  async stop(options: { signal?: NodeJS.Signals; graceMs?: number } = {}): Promise<ProcessExit> {
    const { signal = 'SIGTERM', graceMs = 10_000 } = options;
    if (!this.isRunning) return this.exited;
    this.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const forced = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.kill('SIGKILL');
        resolve();
      }, graceMs);
    });
    await Promise.race([this.exited, forced]);
    clearTimeout(timer);
    return this.exited;
  }

  /** An Error naming this process and carrying the tail of its output. */
  failure(message: string): Error {
    const tail = this.lines.slice(-40).join('\n');
    return new Error(
      `${this.name} (pid ${this.pid ?? '?'}): ${message}\n--- last output ---\n${tail}`,
    );
  }

  private push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.maxLogLines) this.lines.shift();
    for (const listener of this.listeners) listener(line);
  }
}

function describeExit(exit: ProcessExit): string {
  return exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
}
