import { describe, expect, it } from 'vitest';
import { captureLogger } from '../test/capture-logger.js';
import { BearerAuth } from './bearer-auth.js';
import { buildHttpApp, METRICS_CONTENT_TYPE, type ReadinessCheck } from './http-app.js';
import { describeSchemaIssues } from './validation-message.js';

const passing = (name: string): ReadinessCheck => ({ name, check: () => Promise.resolve() });

describe('buildHttpApp probes', () => {
  it('answers /healthz with 200 {status: "ok"}', async () => {
    const app = buildHttpApp({ logger: captureLogger(), readiness: [] });
    const response = await app.inject({ method: 'GET', url: '/healthz' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ok' });
    await app.close();
  });

  it('is ready (200) when every readiness check passes', async () => {
    const app = buildHttpApp({
      logger: captureLogger(),
      readiness: [passing('coordinator'), passing('wal')],
    });
    const response = await app.inject({ method: 'GET', url: '/readyz' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({
      ready: true,
      checks: [
        { name: 'coordinator', ok: true },
        { name: 'wal', ok: true },
      ],
    });
    await app.close();
  });

  it('is not ready (503) when a check fails, naming the check and its error', async () => {
    const app = buildHttpApp({
      logger: captureLogger(),
      readiness: [
        passing('coordinator'),
        { name: 'wal', check: () => Promise.reject(new Error('log wal-0001 not open')) },
      ],
    });
    const response = await app.inject({ method: 'GET', url: '/readyz' });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toEqual({
      ready: false,
      checks: [
        { name: 'coordinator', ok: true },
        { name: 'wal', ok: false, error: 'log wal-0001 not open' },
      ],
    });
    await app.close();
  });

  it('fails a readiness check that does not answer within its time limit', async () => {
    let aborted = false;
    const app = buildHttpApp({
      logger: captureLogger(),
      readinessTimeoutMs: 20,
      readiness: [
        {
          name: 'etcd',
          // Never settles on its own; it sees the abort.
          check: (signal) =>
            new Promise<void>(() => {
              signal.addEventListener('abort', () => {
                aborted = true;
              });
            }),
        },
      ],
    });
    const response = await app.inject({ method: 'GET', url: '/readyz' });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toEqual({
      ready: false,
      checks: [{ name: 'etcd', ok: false, error: 'no answer within 20 ms' }],
    });
    expect(aborted).toBe(true);
    await app.close();
  });

  it('serves an empty Prometheus exposition without a metrics source', async () => {
    const app = buildHttpApp({ logger: captureLogger(), readiness: [] });
    const response = await app.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe(METRICS_CONTENT_TYPE);
    expect(response.body).toBe('');
    await app.close();
  });

  it('serves the metrics source text with the Prometheus content type', async () => {
    const text = '# TYPE woodstream_up gauge\nwoodstream_up 1\n';
    const app = buildHttpApp({
      logger: captureLogger(),
      readiness: [],
      metrics: { collect: () => Promise.resolve(text) },
    });
    const response = await app.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(response.body).toBe(text);
    await app.close();
  });

  it('answers a failing metrics source with a 500 error body and logs it', async () => {
    const logger = captureLogger();
    const app = buildHttpApp({
      logger,
      readiness: [],
      metrics: { collect: () => Promise.reject(new Error('registry broken')) },
    });
    const response = await app.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(500);
    expect(response.json()).toEqual({
      code: 'INTERNAL',
      message: 'registry broken',
      retryable: false,
    });
    expect(logger.records.some((r) => r.level === 'error')).toBe(true);
    await app.close();
  });

  it('has no admin routes and no OpenAPI document without admin options', async () => {
    const app = buildHttpApp({ logger: captureLogger(), readiness: [] });
    for (const url of ['/api/v1/cluster', '/docs/json', '/management/streaming/nodes']) {
      const response = await app.inject({ method: 'GET', url });
      expect(response.statusCode).toBe(404);
      expect(response.json()).toMatchObject({ code: 'NOT_FOUND', retryable: false });
    }
    await app.close();
  });

  it('rejects out-of-range limits when it is built', () => {
    expect(() =>
      buildHttpApp({ logger: captureLogger(), readiness: [], readinessTimeoutMs: 0 }),
    ).toThrow(/readinessTimeoutMs must be an integer in \[1, 60000\]/);
  });
});

describe('BearerAuth', () => {
  it('lets everything through without a token', () => {
    const auth = new BearerAuth(undefined, false);
    expect(() => auth.check('write', undefined)).not.toThrow();
  });

  it('asks for the token on writes (401), refuses another one (403), accepts the right one', () => {
    const auth = new BearerAuth('s3cret', false);
    expect(() => auth.check('write', undefined)).toThrow(
      expect.objectContaining({ code: 'UNAUTHORIZED', status: 401 }),
    );
    expect(() => auth.check('write', 'Basic czNjcmV0')).toThrow(
      expect.objectContaining({ code: 'UNAUTHORIZED' }),
    );
    expect(() => auth.check('write', 'Bearer s3cre')).toThrow(
      expect.objectContaining({ code: 'FORBIDDEN', status: 403 }),
    );
    expect(() => auth.check('write', 'Bearer s3cret')).not.toThrow();
    expect(() => auth.check('read', undefined)).not.toThrow();
  });

  it('protects reads too with protectReads', () => {
    const auth = new BearerAuth('s3cret', true);
    expect(() => auth.check('read', undefined)).toThrow(
      expect.objectContaining({ code: 'UNAUTHORIZED' }),
    );
    expect(() => auth.check('read', 'bearer s3cret')).not.toThrow();
  });

  it('rejects an empty token and protectReads without a token', () => {
    expect(() => new BearerAuth('', false)).toThrow(/must not be empty/);
    expect(() => new BearerAuth(undefined, true)).toThrow(/protectReads needs admin.token/);
  });
});

describe('describeSchemaIssues', () => {
  it('names the field and what is wrong with it', () => {
    expect(
      describeSchemaIssues(
        [
          { instancePath: '', keyword: 'required', params: { missingProperty: 'state' } },
          { instancePath: '/state', keyword: 'enum', params: { allowedValues: ['a', 'b'] } },
          {
            instancePath: '',
            keyword: 'additionalProperties',
            params: { additionalProperty: 'x' },
          },
          { instancePath: '/id', keyword: 'type', params: { type: 'integer' } },
          { instancePath: '/id', keyword: 'minimum', params: {}, message: 'must be >= 0' },
        ],
        'body',
      ),
    ).toBe(
      'body.state is required; body.state must be one of "a", "b"; body.x is not a known field; ' +
        'body.id must be integer; body.id must be >= 0',
    );
  });
});
