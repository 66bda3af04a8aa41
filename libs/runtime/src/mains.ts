import type { TObject, Static } from '@sinclair/typebox';
import { ConfigError, loadConfig, parseFlags, redact } from '@woodstream/config';
import { runUntilSignal } from './lifecycle.js';
import { createLogger, type Logger } from './logger.js';
import { startNodeApp } from './node-app.js';
import { NodeSchema } from './schemas.js';

/** Loads `schema` from `--config FILE`, `<envPrefix>_*` variables and `--a.b=value` flags. */
export async function configFromArgs<S extends TObject>(
  schema: S,
  argv: readonly string[],
  env: Record<string, string | undefined>,
  envPrefix: string,
): Promise<{ config: Static<S>; rest: string[] }> {
  const { overrides, rest, configFile } = parseFlags(argv);
  const file = configFile ?? env[`${envPrefix}_CONFIG`];
  const config = await loadConfig(schema, { ...(file ? { file } : {}), env, envPrefix, overrides });
  return { config, rest };
}

/** Prints a config error the way a person can act on it, and returns the usage exit code. */
export function reportStartError(err: unknown, what: string, err_: (line: string) => void): number {
  if (err instanceof ConfigError) {
    err_(`woodstream ${what}: ${err.message}`);
    err_(
      'Fix the options (flags --a.b=value, environment variables, or --config FILE) and start again.',
    );
    return 2;
  }
  err_(`woodstream ${what}: could not start: ${err instanceof Error ? err.message : String(err)}`);
  return 1;
}

/** `woodstream run node`: a streaming node until SIGTERM. Returns the exit code. */
export async function nodeMain(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  log?: Logger,
): Promise<number> {
  const logger = log ?? createLogger({ component: 'streaming-node' });
  try {
    const { config } = await configFromArgs(NodeSchema, argv, env, 'WOODSTREAM_NODE');
    logger.info('configuration', { config: redact(NodeSchema, config) });
    const app = await startNodeApp(config, logger);
    logger.info('ready', { serverId: app.node.serverId, address: app.node.address });
    return await runUntilSignal(app, logger);
  } catch (err) {
    return reportStartError(err, 'run node', (line) => process.stderr.write(`${line}\n`));
  }
}
