import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { ConfigError, describeConfig, envName, loadConfig, parseFlags, redact } from './index.js';

const schema = Type.Object(
  {
    grpc: Type.Object(
      {
        host: Type.String({ default: '127.0.0.1' }),
        port: Type.Integer({ default: 7000, minimum: 0, maximum: 65535, description: 'gRPC port' }),
      },
      { default: {}, additionalProperties: false },
    ),
    sessionTtlMs: Type.Integer({ default: 10000, minimum: 1000, maximum: 300000 }),
    endpoints: Type.Array(Type.String(), { default: ['http://127.0.0.1:2379'] }),
    secretKey: Type.String({ default: '', secret: true }),
  },
  { additionalProperties: false },
);

describe('loadConfig', () => {
  it('applies defaults, then env, then overrides, and freezes the result', async () => {
    const config = await loadConfig(schema, {
      env: {
        WOODSTREAM_NODE_GRPC_PORT: '7100',
        WOODSTREAM_NODE_SESSION_TTL_MS: '5000',
        WOODSTREAM_NODE_ENDPOINTS: 'http://a:1,http://b:2',
      },
      envPrefix: 'WOODSTREAM_NODE',
      overrides: { 'grpc.port': '7200' },
    });
    expect(config).toEqual({
      grpc: { host: '127.0.0.1', port: 7200 },
      sessionTtlMs: 5000,
      endpoints: ['http://a:1', 'http://b:2'],
      secretKey: '',
    });
    expect(Object.isFrozen(config.grpc)).toBe(true);
  });

  it('reports every problem at once, naming the env variable a bad value came from', async () => {
    const err = await loadConfig(schema, {
      env: {
        WOODSTREAM_NODE_SESSION_TTL_MS: '10',
        WOODSTREAM_NODE_GRPC_PROT: '7100',
        WOODSTREAM_NODE_CONFIG: '',
        WOODSTREAM_COORDINATOR_GRPC_PORT: '1',
        // Kubernetes service links of a Service named woodstream-node.
        WOODSTREAM_NODE_SERVICE_HOST: '10.0.0.1',
        WOODSTREAM_NODE_SERVICE_PORT_GRPC: '19531',
        WOODSTREAM_NODE_PORT: 'tcp://10.0.0.1:19531',
        WOODSTREAM_NODE_PORT_19531_TCP_ADDR: '10.0.0.1',
      },
      envPrefix: 'WOODSTREAM_NODE',
      overrides: { 'grpc.port': 'seventy', 'grpc.colour': 'red' },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join('\n');
    expect(problems).toContain("unknown option 'grpc.colour'");
    // A misspelt variable of this service is an error; other services' variables are not.
    expect(problems).toContain('unknown environment variable WOODSTREAM_NODE_GRPC_PROT');
    expect(problems).not.toMatch(
      /WOODSTREAM_NODE_CONFIG|WOODSTREAM_COORDINATOR|SERVICE_HOST|SERVICE_PORT|NODE_PORT/,
    );
    expect(problems).toMatch(/grpc\.port: /);
    expect(problems).toMatch(/sessionTtlMs: .*\(from WOODSTREAM_NODE_SESSION_TTL_MS\)/);
  });

  it('redacts secrets and documents every option', async () => {
    const config = await loadConfig(schema, { overrides: { secretKey: 'hunter2' } });
    expect(JSON.stringify(redact(schema, config))).not.toContain('hunter2');
    expect(envName('WOODSTREAM_NODE', ['grpc', 'port'])).toBe('WOODSTREAM_NODE_GRPC_PORT');
    expect(describeConfig(schema, 'X')).toContain(
      '| `grpc.port` | `X_GRPC_PORT` | integer (0–65535) | `7000` | gRPC port |',
    );
  });

  it('parses --key=value and --key value flags and keeps the rest', () => {
    expect(
      parseFlags(['run', '--grpc.port=1', '--config', 'c.json', 'node', '--sessionTtlMs', '2000']),
    ).toEqual({
      overrides: { 'grpc.port': '1', sessionTtlMs: '2000' },
      rest: ['run', 'node'],
      configFile: 'c.json',
    });
  });
});
