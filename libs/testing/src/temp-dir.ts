import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A directory under the OS temp dir that belongs to one test or server. */
export interface TempDir extends AsyncDisposable {
  readonly path: string;
  /** Deletes the directory and everything in it. Safe to call twice. */
  remove(): Promise<void>;
}

/** Creates a fresh, empty temp directory named `woodstream-<prefix>-XXXXXX`. */
export async function makeTempDir(prefix: string): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), `woodstream-${prefix}-`));
  const remove = (): Promise<void> => rm(path, { recursive: true, force: true });
  return { path, remove, [Symbol.asyncDispose]: remove };
}
