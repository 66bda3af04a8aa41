import { createRequire } from 'node:module';
import { onTestFailed, onTestFinished } from 'vitest';
import { ManagedProcess, type SpawnOptions } from './managed-process.js';

/** Options for {@link spawnService}. */
export interface ServiceOptions extends Omit<SpawnOptions, 'command' | 'args'> {
  /** A TypeScript or JavaScript entry file, e.g. `services/cli/src/main.ts`. */
  entry: string;
  args?: readonly string[];
  /** Grace period for SIGTERM when the test ends before SIGKILL. @default 10000 */
  stopGraceMs?: number;
}

/**
 * Runs a Woodstream entry point from source in a child Node process (through tsx, resolving
 * workspace libs to their sources) for one test. When the test fails, the process's output
 * is printed; when the test ends, the process is stopped by PID — pass or fail.
 * Call it inside a test body.
 */
export function spawnService(options: ServiceOptions): ManagedProcess {
  const tsx = createRequire(import.meta.url).resolve('tsx');
  const proc = ManagedProcess.spawn({
    ...options,
    command: process.execPath,
    args: [
      '--conditions=@woodstream/source',
      '--import',
      tsx,
      options.entry,
      ...(options.args ?? []),
    ],
  });
  onTestFailed(() => {
    console.error(`--- output of ${proc.name} (pid ${proc.pid ?? '?'}) ---\n${proc.output()}`);
  });
  onTestFinished(async () => {
    await proc.stop({ graceMs: options.stopGraceMs ?? 10_000 });
  });
  return proc;
}
