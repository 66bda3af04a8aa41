import { execFile } from 'node:child_process';

/** Result of a short command run by {@link runCommand}. */
export interface CommandResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs a short-lived command to completion with a time limit. Rejects with an error that
 * carries the command line and its output when it fails, times out or cannot start.
 */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { timeoutMs: number; cwd?: string; env?: Record<string, string> },
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      [...args],
      {
        timeout: options.timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
        cwd: options.cwd,
        env: { ...process.env, ...options.env },
      },
      (err, stdout, stderr) => {
        if (err) {
          const why = err.killed ? `timed out after ${options.timeoutMs} ms` : err.message;
          reject(
            new Error(`${command} ${args.join(' ')}: ${why}\n${stdout}\n${stderr}`.trimEnd(), {
              cause: err,
            }),
          );
          return;
        }
        resolve({ stdout, stderr });
      },
    );
  });
}
