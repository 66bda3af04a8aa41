import { createInterface } from 'node:readline';
import { StreamingClient, type ReadFrom } from '@woodstream/client';
import { makeTimeTick } from '@woodstream/streaming';
import {
  checkArgs,
  formatMessageId,
  intOption,
  parseMessageId,
  stringOption,
  UsageError,
  type ParsedArgs,
} from './args.js';
import type { CliIo } from './cli.js';

export const DEFAULT_COORDINATOR = '127.0.0.1:19530';
/** Options every client command takes (see {@link connect}). */
const CONNECT_OPTIONS = ['coordinator', 'connect-timeout-ms'] as const;

/** Text payloads print as UTF-8; anything else as base64 with `"encoding":"base64"`. */
function payloadJson(payload: Uint8Array): { payload: string; encoding?: 'base64' } {
  try {
    return { payload: new TextDecoder('utf-8', { fatal: true }).decode(payload) };
  } catch {
    return { payload: Buffer.from(payload).toString('base64'), encoding: 'base64' };
  }
}

async function connect(args: ParsedArgs, signal: AbortSignal): Promise<StreamingClient> {
  const coordinator = stringOption(args, 'coordinator', DEFAULT_COORDINATOR);
  const timeoutMs = intOption(args, 'connect-timeout-ms', 10_000, [100, 600_000]);
  try {
    return await StreamingClient.connect({ coordinator, signal, connectTimeoutMs: timeoutMs });
  } catch (err) {
    throw new Error(
      `cannot reach the coordinator at ${coordinator} (${err instanceof Error ? err.message : String(err)}). ` +
        'Is Woodstream running? Start it with `npm start` or pass --coordinator HOST:PORT.',
      { cause: err },
    );
  }
}

/** `produce`: counted synthetic messages, or one message per stdin line. Prints one JSON line per ack. */
export async function produce(
  args: ParsedArgs,
  io: CliIo & { stdin: NodeJS.ReadableStream; isTty: boolean },
  signal: AbortSignal,
): Promise<number> {
  checkArgs(args, 'produce', [...CONNECT_OPTIONS, 'vchannel', 'count', 'size', 'inflight']);
  const vchannel = stringOption(args, 'vchannel');
  const count = args.options.has('count')
    ? intOption(args, 'count', 0, [1, 100_000_000])
    : undefined;
  const size = intOption(args, 'size', 16, [0, 64 * 1024 * 1024]);
  const window = intOption(args, 'inflight', 256, [1, 65_536]);
  const client = await connect(args, signal);
  try {
    const print = (r: {
      messageId: { segmentId: number; entryId: number };
      timeTick: bigint;
    }): void =>
      io.out(
        JSON.stringify({
          vchannel,
          messageId: formatMessageId(r.messageId),
          timeTick: r.timeTick.toString(),
        }),
      );
    if (count !== undefined) {
      let done = 0;
      let next = 0;
      const progress = io.isTty ? progressBar(io, count) : undefined;
      const inflight = new Set<Promise<void>>();
      while (next < count) {
        if (inflight.size >= window) await Promise.race(inflight);
        const i = next++;
        const payload = new Uint8Array(size).fill(97 + (i % 26));
        const p = client
          .append({ vchannel, payload, properties: { seq: String(i) } }, { signal })
          .then((r) => {
            done += 1;
            progress?.update(done);
            print(r);
          })
          .finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await Promise.all(inflight);
      progress?.finish();
      return 0;
    }
    const lines = createInterface({ input: io.stdin, crlfDelay: Infinity });
    for await (const line of lines) {
      print(await client.append({ vchannel, payload: new TextEncoder().encode(line) }, { signal }));
    }
    return 0;
  } finally {
    await client.close();
  }
}

/**
 * `consume`: prints one JSON line per message. Without --follow it stops once everything
 * appended before it started has been delivered (a time tick past its start); --count stops it
 * earlier, and with --follow ends it.
 */
export async function consume(args: ParsedArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  checkArgs(args, 'consume', [...CONNECT_OPTIONS, 'vchannel', 'from', 'count', 'follow']);
  const vchannel = stringOption(args, 'vchannel');
  const fromText = stringOption(args, 'from', 'earliest');
  const from: ReadFrom =
    fromText === 'earliest' || fromText === 'latest'
      ? fromText
      : { from: parseMessageId(fromText) };
  const count = args.options.has('count')
    ? intOption(args, 'count', 0, [1, 100_000_000])
    : undefined;
  const follow = args.options.get('follow') === true;
  const startedTick = makeTimeTick(Date.now());
  const client = await connect(args, signal);
  let seen = 0;
  try {
    const subscription = client.read({ vchannel, from, signal });
    for await (const event of subscription) {
      if (event.type === 'timeTick') {
        if (!follow && event.timeTick >= startedTick) break;
        continue;
      }
      io.out(
        JSON.stringify({
          vchannel: event.vchannel,
          messageId: formatMessageId(event.messageId),
          timeTick: event.timeTick.toString(),
          ...payloadJson(event.payload),
          properties: event.properties,
        }),
      );
      seen += 1;
      if (count !== undefined && seen >= count) break;
    }
    return 0;
  } finally {
    await client.close();
  }
}

function progressBar(io: CliIo & { progress?: (text: string) => void }, total: number) {
  let last = 0;
  const draw = (done: number): void => {
    const width = 30;
    const filled = Math.round((done / total) * width);
    io.progress?.(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`);
  };
  return {
    update(done: number) {
      const now = Date.now();
      if (now - last >= 100 || done === total) {
        last = now;
        draw(done);
      }
    },
    finish() {
      draw(total);
      io.progress?.('\n');
    },
  };
}

export { UsageError };
