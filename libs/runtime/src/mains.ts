import type { TObject, Static } from '@sinclair/typebox';
import { ConfigError, loadConfig, parseFlags, redact } from '@woodstream/config';
import { runUntilSignal } from './lifecycle.js';
import { createLogger, type Logger } from './logger.js';
import { startNodeApp } from './node-app.js';
import { startCoordinatorApp } from './coordinator-app.js';
import { CoordinatorSchema, NodeSchema, StandaloneSchema } from './schemas.js';
import { startStandalone } from './standalone-app.js';

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

/** `woodstream run coordinator`: a coordinator (active or standby) until SIGTERM. */
export async function coordinatorMain(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  log?: Logger,
): Promise<number> {
  const logger = log ?? createLogger({ component: 'streaming-coordinator' });
  try {
    const { config } = await configFromArgs(CoordinatorSchema, argv, env, 'WOODSTREAM_COORDINATOR');
    logger.info('configuration', { config: redact(CoordinatorSchema, config) });
    const app = await startCoordinatorApp(config, config.grpc, logger, {
      metadataConfig: config.metadata,
    });
    logger.info('ready', { address: app.address });
    return await runUntilSignal(app, logger);
  } catch (err) {
    return reportStartError(err, 'run coordinator', (line) => process.stderr.write(`${line}\n`));
  }
}

/**
 * `woodstream run standalone` (what `npm start` runs): coordinator + one node, embedded
 * metadata, local storage. Prints how to produce and consume against it.
 */
export async function standaloneMain(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  out: (line: string) => void,
  log?: Logger,
): Promise<number> {
  const logger = log ?? createLogger({ component: 'standalone' });
  try {
    const { config } = await configFromArgs(StandaloneSchema, argv, env, 'WOODSTREAM_STANDALONE');
    logger.info('configuration', { config: redact(StandaloneSchema, config) });
    const app = await startStandalone(config, logger);
    const flag =
      app.coordinatorAddress === '127.0.0.1:19530'
        ? ''
        : ` --coordinator ${app.coordinatorAddress}`;
    out(
      `Woodstream standalone is running: coordinator ${app.coordinatorAddress}, node ${app.nodeAddress}, data in ${config.dataDir}`,
    );
    out('Try it from another terminal:');
    out(`  echo hello | npx woodstream produce --vchannel demo${flag}`);
    out(`  npx woodstream produce --vchannel demo --count 1000 --size 64${flag}`);
    out(`  npx woodstream consume --vchannel demo --from earliest${flag}`);
    out(`  npx woodstream status${flag}`);
    out('Stop with Ctrl-C.');
    return await runUntilSignal(app, logger);
  } catch (err) {
    return reportStartError(err, 'run standalone', (line) => process.stderr.write(`${line}\n`));
  }
}
