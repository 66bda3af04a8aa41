import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { makeTempDir, waitFor, type ManagedProcess } from '@woodstream/testing';
import { describe, expect, it, onTestFailed } from 'vitest';
import { ANY_STANDALONE_PORTS, consumeArgs, produceArgs, spawnCli } from './cli.js';

interface OtlpSpan {
  name: string;
  traceId: string;
  spanId: string;
  links?: { traceId: string; spanId: string }[];
}
interface OtlpExport {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
    scopeSpans?: { spans?: OtlpSpan[] }[];
  }[];
}

/** A minimal OTLP/HTTP (JSON) trace receiver on loopback: keeps every span with its service. */
async function startReceiver(): Promise<{
  endpoint: string;
  spans: (OtlpSpan & { service: string })[];
  close(): Promise<void>;
}> {
  const spans: (OtlpSpan & { service: string })[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/traces' && req.headers['content-type']?.includes('json')) {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpExport;
        for (const rs of body.resourceSpans ?? []) {
          const service =
            rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ??
            '?';
          for (const ss of rs.scopeSpans ?? []) {
            for (const span of ss.spans ?? []) spans.push({ ...span, service });
          }
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } else {
        res.writeHead(415).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no receiver address');
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    spans,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function woodstream(name: string, args: string[], env: Record<string, string>): ManagedProcess {
  const proc = spawnCli(name, args, { env });
  onTestFailed(() => console.error(`--- ${name} ---\n${proc.output().slice(-4000)}`));
  return proc;
}

describe('tracing over OTLP', () => {
  it('exports producer spans from the CLI and delivery spans from the server, linked through the message', async () => {
    const receiver = await startReceiver();
    await using dir = await makeTempDir('tracing');
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint };
    const server = woodstream(
      'standalone',
      ['run', 'standalone', '--dataDir', join(dir.path, 'data'), ...ANY_STANDALONE_PORTS],
      env,
    );
    try {
      const running = await server.waitForOutput(/standalone is running: coordinator (\S+),/, {
        timeoutMs: 60_000,
      });
      const coordinator = running[1] as string;
      const count = 5;
      const produce = woodstream('produce', produceArgs('traced', count, 16, coordinator), env);
      expect((await produce.exited).code).toBe(0);
      const consume = woodstream('consume', consumeArgs('traced', count, coordinator), {});
      expect((await consume.exited).code).toBe(0);

      // The CLI flushed on exit; the server exports in batches, so wait for its spans.
      const producerSpans = receiver.spans.filter(
        (s) => s.service === 'woodstream-cli' && s.name === 'woodstream.client.produce',
      );
      expect(producerSpans).toHaveLength(count);
      const delivered = await waitFor(
        () => {
          const d = receiver.spans.filter(
            (s) => s.service === 'woodstream-standalone' && s.name === 'woodstream.node.deliver',
          );
          return d.length >= count ? d : undefined;
        },
        { timeoutMs: 30_000, description: 'delivery spans from the server' },
      );
      for (const p of producerSpans) {
        const linked = delivered.filter((d) =>
          (d.links ?? []).some((l) => l.traceId === p.traceId && l.spanId === p.spanId),
        );
        expect(linked.length).toBeGreaterThanOrEqual(1);
      }
      // The server's produce span (one per produce frame, which may batch several producers'
      // messages) links to the producer spans whose messages it carried.
      await waitFor(
        () =>
          receiver.spans.some(
            (s) =>
              s.service === 'woodstream-standalone' &&
              s.name === 'woodstream.node.produce' &&
              (s.links ?? []).some((l) => producerSpans.some((p) => p.spanId === l.spanId)),
          ),
        { timeoutMs: 30_000, description: 'a node produce span linked to a producer span' },
      );
    } finally {
      await server.stop({ graceMs: 10_000 });
      await receiver.close();
    }
  });
});
