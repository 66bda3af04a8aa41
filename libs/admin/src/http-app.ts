import swagger from '@fastify/swagger';
import { abortable, intOption } from '@woodstream/common';
import type { StreamingCoordinator } from '@woodstream/streaming-coordinator';
import Fastify, { type FastifyInstance } from 'fastify';
import { registerAdminRoutes, type AdminRouteContext } from './admin-routes.js';
import { BearerAuth } from './bearer-auth.js';
import { HttpApiError, toHttpApiError } from './http-errors.js';
import { registerMilvusRoutes } from './milvus-routes.js';
import type { HttpLogger, RouteContext } from './route-context.js';
import { describeSchemaIssues, type SchemaIssue } from './validation-message.js';

/** One condition /readyz checks, e.g. "the coordinator is running" or "the WAL opened". */
export interface ReadinessCheck {
  name: string;
  /** Resolves when ready; rejects (with the reason as message) when not. Must honour `signal`. */
  check(signal: AbortSignal): Promise<void>;
}

/** Where /metrics gets its body from. */
export interface MetricsSource {
  /** Prometheus text exposition format 0.0.4. */
  collect(signal: AbortSignal): Promise<string>;
}

/** What the admin routes need; given only on processes that run a coordinator. */
export interface AdminOptions {
  coordinator: StreamingCoordinator;
  /**
   * When set, every mutating admin route requires `Authorization: Bearer <token>` (401 without,
   * 403 with another token). Never logged.
   */
  token?: string;
  /** Also require the token on the admin reads (/api/v1 GETs, /management GETs). @default false */
  protectReads?: boolean;
}

export interface HttpAppOptions {
  logger: HttpLogger;
  /** /readyz runs them all concurrently; 200 when every one resolves, 503 otherwise. */
  readiness: readonly ReadinessCheck[];
  /** /metrics body; absent ⇒ an empty exposition (200), so scrapers never see a 404. */
  metrics?: MetricsSource;
  /** The admin REST API, the Milvus-compatible aliases and the OpenAPI document. */
  admin?: AdminOptions;
  /** Time limit of each readiness check. @default 2000 (min 1, max 60000) */
  readinessTimeoutMs?: number;
  /** Time limit of a metrics collection or an admin call. @default 10000 (min 100, max 600000) */
  requestTimeoutMs?: number;
}

/** Prometheus text exposition format 0.0.4. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const DEFAULT_READINESS_TIMEOUT_MS = 2_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Admin bodies are a few small fields; anything larger is a mistake or an attack. */
const BODY_LIMIT_BYTES = 64 * 1024;

/**
 * Builds the HTTP app of a process without listening (tests use `inject()`): /healthz, /readyz,
 * /metrics always; with `options.admin` also /api/v1/*, /management/streaming/* and
 * /docs/json. Throws RangeError for out-of-range limits.
 */
export function buildHttpApp(options: HttpAppOptions): FastifyInstance {
  const readinessTimeoutMs = intOption(
    'readinessTimeoutMs',
    options.readinessTimeoutMs,
    DEFAULT_READINESS_TIMEOUT_MS,
    1,
    60_000,
  );
  const requestTimeoutMs = intOption(
    'requestTimeoutMs',
    options.requestTimeoutMs,
    DEFAULT_REQUEST_TIMEOUT_MS,
    100,
    600_000,
  );
  const logger = options.logger.child({ component: 'http' });
  const closingController = new AbortController();
  const context: RouteContext = { logger, requestTimeoutMs, closing: closingController.signal };
  // Built before the app, so a bad token setting throws here rather than at the first request.
  const adminContext: AdminRouteContext | undefined =
    options.admin === undefined
      ? undefined
      : {
          ...context,
          coordinator: options.admin.coordinator,
          auth: new BearerAuth(options.admin.token, options.admin.protectReads ?? false),
        };

  const app = Fastify({
    // Requests are logged by the hook below through the injected logger, never by pino.
    logger: false,
    bodyLimit: BODY_LIMIT_BYTES,
    // Unknown fields are rejected (400), not silently dropped. Path and query values are
    // strings on the wire, so values are coerced where that loses nothing ("2" → 2, "true" →
    // true); anything else (e.g. "maybe" for a boolean) is a 400.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: true } },
    schemaErrorFormatter: (errors, dataVar) =>
      new HttpApiError(
        'INVALID_REQUEST',
        describeSchemaIssues(errors as unknown as SchemaIssue[], dataVar),
      ),
  });
  // preClose runs before the server waits for in-flight requests, so slow admin calls end now.
  app.addHook('preClose', (done) => {
    closingController.abort(new Error('the HTTP server is closing'));
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    logger.debug('http request', {
      method: request.method,
      route: request.routeOptions.url ?? request.url.split('?')[0],
      statusCode: reply.statusCode,
      durationMs: Math.round(reply.elapsedTime),
    });
    done();
  });
  app.setNotFoundHandler((request, reply) => {
    void reply
      .code(404)
      .send(
        new HttpApiError(
          'NOT_FOUND',
          `no route ${request.method} ${request.url.split('?')[0]}`,
        ).toBody(),
      );
  });
  app.setErrorHandler((error, request, reply) => {
    const apiError = fromFastifyError(error);
    if (apiError.code === 'INTERNAL') {
      logger.error('http request failed', {
        method: request.method,
        route: request.routeOptions.url,
        error: apiError.message,
      });
    }
    void reply.code(apiError.status).send(apiError.toBody());
  });

  if (adminContext !== undefined) {
    // Registered before every route plugin, so its onRoute hook sees all of them.
    void app.register(swagger, {
      openapi: {
        info: {
          title: 'Woodstream admin API',
          version: '1',
          description:
            'Cluster state, node freeze, channel moves and balance settings of the streaming coordinator.',
        },
        components: {
          securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
        },
      },
    });
  }
  void app.register((instance, _opts, done) => {
    registerProbeRoutes(instance, options, context, readinessTimeoutMs);
    done();
  });
  if (adminContext !== undefined) {
    void app.register((instance, _opts, done) => {
      registerAdminRoutes(instance, adminContext);
      done();
    });
    void app.register((instance, _opts, done) => {
      registerMilvusRoutes(instance, adminContext);
      done();
    });
    void app.register((instance, _opts, done) => {
      instance.get('/docs/json', { schema: { hide: true } }, () => instance.swagger());
      done();
    });
  }
  return app;
}

/** Fastify's own errors (bad JSON, wrong content type, body too large) become INVALID_REQUEST. */
function fromFastifyError(error: unknown): HttpApiError {
  if (error instanceof HttpApiError) return error;
  const statusCode = (error as { statusCode?: unknown }).statusCode;
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return new HttpApiError('INVALID_REQUEST', (error as Error).message, { cause: error });
  }
  return toHttpApiError(error);
}

const readySchema = {
  type: 'object',
  required: ['ready', 'checks'],
  properties: {
    ready: { type: 'boolean' },
    checks: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name', 'ok'],
        properties: {
          name: { type: 'string' },
          ok: { type: 'boolean' },
          error: { type: 'string' },
        },
      },
    },
  },
} as const;

function registerProbeRoutes(
  app: FastifyInstance,
  options: HttpAppOptions,
  context: RouteContext,
  readinessTimeoutMs: number,
): void {
  app.get(
    '/healthz',
    {
      schema: {
        summary: 'Liveness: 200 while the process serves requests',
        tags: ['probes'],
        response: {
          200: { type: 'object', required: ['status'], properties: { status: { type: 'string' } } },
        },
      },
    },
    () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: 200 when every check passes, 503 otherwise',
        tags: ['probes'],
        response: { 200: readySchema, 503: readySchema },
      },
    },
    async (_request, reply) => {
      const checks = await Promise.all(
        options.readiness.map(async (c) => {
          const signal = AbortSignal.any([
            AbortSignal.timeout(readinessTimeoutMs),
            context.closing,
          ]);
          try {
            await abortable(c.check(signal), signal);
            return { name: c.name, ok: true };
          } catch (err) {
            const timedOut = err instanceof DOMException && err.name === 'TimeoutError';
            return {
              name: c.name,
              ok: false,
              error: timedOut
                ? `no answer within ${readinessTimeoutMs} ms`
                : err instanceof Error
                  ? err.message
                  : String(err),
            };
          }
        }),
      );
      const ready = checks.every((c) => c.ok);
      return reply.code(ready ? 200 : 503).send({ ready, checks });
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics (text exposition format 0.0.4)',
        tags: ['probes'],
        produces: ['text/plain'],
      },
    },
    async (_request, reply) => {
      const signal = AbortSignal.any([
        AbortSignal.timeout(context.requestTimeoutMs),
        context.closing,
      ]);
      const body =
        options.metrics === undefined
          ? ''
          : await abortable(options.metrics.collect(signal), signal);
      return reply.type(METRICS_CONTENT_TYPE).send(body);
    },
  );
}

/** A listening HTTP server; see {@link startHttpServer}. */
export interface HttpServer {
  /** `host:port` as bound (the real port when 0 was asked for). */
  readonly address: string;
  readonly port: number;
  /** Closes the listener and waits for in-flight requests (admin calls are aborted). Idempotent. */
  stop(): Promise<void>;
}

/**
 * Builds the app and listens on `host:port` (0 picks a free port). Rejects when the address is
 * taken or `signal` aborts first; aborting `signal` later stops the server.
 */
export async function startHttpServer(
  options: HttpAppOptions & { host: string; port: number; signal?: AbortSignal },
): Promise<HttpServer> {
  const { host, port, signal, ...appOptions } = options;
  signal?.throwIfAborted();
  const app = buildHttpApp(appOptions);
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= app.close().then(() => undefined);
    return stopping;
  };
  const onAbort = (): void => void stop();
  try {
    await abortable(app.listen({ host, port }), signal);
  } catch (err) {
    await stop();
    throw err;
  }
  signal?.addEventListener('abort', onAbort, { once: true });
  const bound = app.server.address();
  const boundPort = typeof bound === 'object' && bound !== null ? bound.port : port;
  const address = `${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
  options.logger.info('http server listening', { address });
  return {
    address,
    port: boundPort,
    stop: () => {
      signal?.removeEventListener('abort', onAbort);
      return stop();
    },
  };
}
