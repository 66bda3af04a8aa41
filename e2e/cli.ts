// The `woodstream` CLI as a process, run from source the way `npm start` runs it.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManagedProcess } from '@woodstream/testing';

export const repoRoot = fileURLToPath(new URL('..', import.meta.url));
/** Path of the tsx loader (`node --import <tsx>`). */
export const tsx = createRequire(import.meta.url).resolve('tsx');
const cliEntry = join(repoRoot, 'services/cli/src/main.ts');

type CliOptions = { cwd?: string; env?: Record<string, string> };

/** Spawns `woodstream <args>` from source through tsx. The caller stops it. */
export function spawnCli(name: string, args: string[], options: CliOptions = {}): ManagedProcess {
  const command = ['--conditions=@woodstream/source', '--import', tsx, cliEntry];
  return ManagedProcess.spawn({
    name,
    command: process.execPath,
    args: [...command, ...args],
    ...options,
  });
}

/**
 * Spawns the installed `woodstream` command (what `npx woodstream` runs after `npm ci`, as the
 * README's quick start does). The caller stops it.
 */
export function spawnInstalledCli(
  name: string,
  args: string[],
  options: CliOptions = {},
): ManagedProcess {
  const command = join(repoRoot, 'node_modules/.bin/woodstream');
  return ManagedProcess.spawn({ name, command, args, ...options });
}

/** Waits for `proc` to exit; its JSON output lines, or the failure when the exit code is not 0. */
export async function jsonLines(proc: ManagedProcess): Promise<string[]> {
  const exit = await proc.exited;
  if (exit.code !== 0) throw proc.failure(`exited with ${exit.code ?? exit.signal}`);
  return proc
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'));
}

/** `run standalone` options that let the OS pick every port. */
export const ANY_STANDALONE_PORTS: readonly string[] = [
  '--coordinatorPort',
  '0',
  '--nodePort',
  '0',
  '--httpPort',
  '0',
];

/** Arguments of `woodstream consume` reading `count` messages of `vchannel` from the earliest. */
export function consumeArgs(vchannel: string, count: number, coordinator: string): string[] {
  return [
    'consume',
    '--vchannel',
    vchannel,
    '--from',
    'earliest',
    '--count',
    String(count),
    '--coordinator',
    coordinator,
  ];
}

/** Arguments of `woodstream produce` sending `count` messages of `sizeBytes` to `vchannel`. */
export function produceArgs(
  vchannel: string,
  count: number,
  sizeBytes: number,
  coordinator: string,
): string[] {
  return [
    'produce',
    '--vchannel',
    vchannel,
    '--count',
    String(count),
    '--size',
    String(sizeBytes),
    '--coordinator',
    coordinator,
  ];
}
