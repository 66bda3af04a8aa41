import type { TObject, Static } from '@sinclair/typebox';
import { ConfigError, loadConfig, parseFlags, redact } from '@woodstream/config';
import { hostname } from 'node:os';
import { startTelemetry, type Telemetry } from '@woodstream/observability';
import { runUntilSignal } from './lifecycle.js';
import { createLogger, type Logger } from './logger.js';
import { startNodeApp } from './node-app.js';
import { startCoordinatorApp } from './coordinator-app.js';
import { CoordinatorSchema, NodeSchema, StandaloneSchema } from './schemas.js';
import { startStandalone } from './standalone-app.js';
import {
  coordinatorReadiness,
  metadataReadiness,
  nodeReadiness,
  readAdminToken,
  withHttpServer,
} from './process-http.js';

/** Loads `schema` from `--config FILE`, `<envPrefix>_*` variables and `--a.b=value` flags. */
export async function configFromArgs<S extends TObject>(
  schema: S,
  argv: readonly string[],
  env: Record<string, string | undefined>,
  envPrefix: string,
): Promise<{ config: Static<S> }> {
  const { overrides, rest, configFile } = parseFlags(argv);
  // Words the service does not take are mistakes (a stray value, a flag missing its value).
  if (rest.length > 0)
    throw new ConfigError(
      rest.map((r) =>
        r.startsWith('--') ? `option ${r} needs a value` : `unexpected argument '${r}'`,
      ),
    );
  const file = configFile ?? env[`${envPrefix}_CONFIG`];
  const config = await loadConfig(schema, { ...(file ? { file } : {}), env, envPrefix, overrides });
  return { config };
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

/**
 * Process-wide telemetry: Prometheus metrics for /metrics, and traces exported over OTLP only
 * when an endpoint is configured (the config field, else the standard OTEL_EXPORTER_OTLP_ENDPOINT).
 */
function processTelemetry(
  serviceName: string,
  config: { otlpEndpoint: string },
  env: Record<string, string | undefined>,
): Telemetry {
  const endpoint = config.otlpEndpoint || env['OTEL_EXPORTER_OTLP_ENDPOINT'] || '';
  return startTelemetry({
    serviceName,
    serviceInstanceId: `${hostname()}:${process.pid}`,
    ...(endpoint !== '' ? { otlpTracesEndpoint: endpoint } : {}),
  });
}

/** Runs `app` until a signal, then flushes telemetry; the exit code of the run wins. */
async function runProcess(
  app: { stop(): Promise<void> },
  telemetry: Telemetry,
  logger: Logger,
): Promise<number> {
  const code = await runUntilSignal(app, logger);
  await telemetry.shutdown().catch((err: unknown) => {
    logger.warn('telemetry shutdown failed', { err: String(err) });
  });
  return code;
}

/** `woodstream run node`: a streaming node until SIGTERM. Returns the exit code. */
export async function nodeMain(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  log?: Logger,
): Promise<number> {
  let telemetry: Telemetry | undefined;
  try {
    const { config } = await configFromArgs(NodeSchema, argv, env, 'WOODSTREAM_NODE');
    const logger = log ?? createLogger({ component: 'streaming-node', level: config.logLevel });
    logger.info('configuration', { config: redact(NodeSchema, config) });
    telemetry = processTelemetry('woodstream-node', config, env);
    const app = await startNodeApp(config, logger);
    const served = await withHttpServer(app, {
      ...config.http,
      logger,
      readiness: [metadataReadiness(app.metadata), nodeReadiness(app.node)],
      metrics: telemetry,
    });
    logger.info('ready', {
      serverId: app.node.serverId,
      address: app.node.address,
      http: served.httpAddress,
    });
    return await runProcess(served, telemetry, logger);
  } catch (err) {
    await telemetry?.shutdown().catch(() => undefined);
    return reportStartError(err, 'run node', (line) => process.stderr.write(`${line}\n`));
  }
}

/** `woodstream run coordinator`: a coordinator (active or standby) until SIGTERM. */
export async function coordinatorMain(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  log?: Logger,
): Promise<number> {
  let telemetry: Telemetry | undefined;
  try {
    const { config } = await configFromArgs(CoordinatorSchema, argv, env, 'WOODSTREAM_COORDINATOR');
    const logger =
      log ?? createLogger({ component: 'streaming-coordinator', level: config.logLevel });
    logger.info('configuration', { config: redact(CoordinatorSchema, config) });
    const token = await readAdminToken(config.adminTokenFile, config.adminProtectReads);
    telemetry = processTelemetry('woodstream-coordinator', config, env);
    const app = await startCoordinatorApp(config, config.grpc, logger, {
      metadataConfig: config.metadata,
    });
    const served = await withHttpServer(app, {
      ...config.http,
      logger,
      readiness: [metadataReadiness(app.metadata), coordinatorReadiness(app.coordinator)],
      metrics: telemetry,
      admin: {
        coordinator: app.coordinator,
        ...(token !== undefined ? { token } : {}),
        protectReads: config.adminProtectReads,
      },
    });
    logger.info('ready', { address: app.address, http: served.httpAddress });
    return await runProcess(served, telemetry, logger);
  } catch (err) {
    await telemetry?.shutdown().catch(() => undefined);
    return reportStartError(err, 'run coordinator', (line) => process.stderr.write(`${line}\n`));
  }
}

/**
 * `woodstream run standalone` (what `npm start` runs): coordinator + one node, embedded
 * metadata, local storage, one HTTP server. Prints how to produce and consume against it.
 */
export async function standaloneMain(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  out: (line: string) => void,
  log?: Logger,
): Promise<number> {
  let telemetry: Telemetry | undefined;
  try {
    const { config } = await configFromArgs(StandaloneSchema, argv, env, 'WOODSTREAM_STANDALONE');
    const logger = log ?? createLogger({ component: 'standalone', level: config.logLevel });
    logger.info('configuration', { config: redact(StandaloneSchema, config) });
    const token = await readAdminToken(config.adminTokenFile, config.adminProtectReads);
    telemetry = processTelemetry('woodstream-standalone', config, env);
    const app = await startStandalone(config, logger);
    const served = await withHttpServer(app, {
      host: config.host,
      port: config.httpPort,
      logger,
      readiness: [
        metadataReadiness(app.coordinator.metadata),
        coordinatorReadiness(app.coordinator.coordinator),
        nodeReadiness(app.node.node),
      ],
      metrics: telemetry,
      admin: {
        coordinator: app.coordinator.coordinator,
        ...(token !== undefined ? { token } : {}),
        protectReads: config.adminProtectReads,
      },
    });
    const flag =
      app.coordinatorAddress === '127.0.0.1:19530'
        ? ''
        : ` --coordinator ${app.coordinatorAddress}`;
    const adminFlag =
      served.httpAddress === '127.0.0.1:9091' ? '' : ` --admin-url http://${served.httpAddress}`;
    out(
      `Woodstream standalone is running: coordinator ${app.coordinatorAddress}, node ${app.nodeAddress}, http ${served.httpAddress}, data in ${config.dataDir}`,
    );
    out('Try it from another terminal:');
    out(`  echo hello | npx woodstream produce --vchannel demo${flag}`);
    out(`  npx woodstream produce --vchannel demo --count 1000 --size 64${flag}`);
    out(`  npx woodstream consume --vchannel demo --from earliest${flag}`);
    out(`  npx woodstream status${flag}`);
    out(`  npx woodstream admin cluster${adminFlag}`);
    out(`  curl http://${served.httpAddress}/metrics`);
    out('Stop with Ctrl-C.');
    return await runProcess(served, telemetry, logger);
  } catch (err) {
    await telemetry?.shutdown().catch(() => undefined);
    return reportStartError(err, 'run standalone', (line) => process.stderr.write(`${line}\n`));
  }
}
