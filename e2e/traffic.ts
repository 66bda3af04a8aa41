// Traffic for e2e tests: produce round-robin over vchannels while something happens to the
// cluster, then read everything back and check every acknowledged message is there, in order.
import type { StreamingClient } from '@woodstream/client';
import { expect } from 'vitest';

export const VCHANNELS = Array.from({ length: 8 }, (_, i) => `orders-${i}`);
const MAX_IN_FLIGHT = 64;
/** How long reading one vchannel back may take before the missing messages are reported. */
const READ_BACK_TIMEOUT_MS = 60_000;

export type Acked = Map<string, { id: string; seq: number }[]>;

/** Produces `total` messages round-robin over the vchannels; runs `during` once a third is sent. */
export async function produceWhile(
  client: StreamingClient,
  total: number,
  during: () => Promise<void>,
): Promise<Acked> {
  const acked: Acked = new Map(VCHANNELS.map((v) => [v, []]));
  let sent = 0;
  let fired = false;
  const inflight = new Set<Promise<void>>();
  while (sent < total) {
    if (inflight.size >= MAX_IN_FLIGHT) await Promise.race(inflight);
    const seq = sent++;
    const vchannel = VCHANNELS[seq % VCHANNELS.length] as string;
    const p = client
      .append({
        vchannel,
        payload: new TextEncoder().encode(`m-${seq}`),
        properties: { seq: String(seq) },
      })
      .then((r) => {
        acked.get(vchannel)?.push({ id: `${r.messageId.segmentId}:${r.messageId.entryId}`, seq });
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
    if (!fired && sent === Math.floor(total / 3)) {
      fired = true;
      await during();
    }
  }
  await Promise.all(inflight);
  return acked;
}

/** Reads every vchannel back; asserts each acked id once, in ack order. Returns duplicates in the log. */
export async function verifyAcked(client: StreamingClient, acked: Acked): Promise<number> {
  let duplicates = 0;
  for (const vchannel of VCHANNELS) {
    const want = acked.get(vchannel) ?? [];
    const wanted = new Set(want.map((a) => a.id));
    const seenIds: string[] = [];
    const seqCount = new Map<string, number>();
    // A gap would leave the read waiting for a message that never comes: bound it, and let
    // the comparison below say which messages are missing.
    const signal = AbortSignal.timeout(READ_BACK_TIMEOUT_MS);
    const sub = client.read({ vchannel, from: 'earliest', signal });
    try {
      for await (const event of sub) {
        if (event.type !== 'message') continue;
        const id = `${event.messageId.segmentId}:${event.messageId.entryId}`;
        const seq = event.properties.seq ?? '';
        seqCount.set(seq, (seqCount.get(seq) ?? 0) + 1);
        if (wanted.has(id)) seenIds.push(id);
        if (seenIds.length === want.length) break;
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
    const missing = want.filter((a) => !seenIds.includes(a.id)).map((a) => a.id);
    expect(missing, `${vchannel}: acknowledged but not read back`).toEqual([]);
    expect(seenIds).toEqual(want.map((a) => a.id));
    duplicates += [...seqCount.values()].reduce((n, c) => n + c - 1, 0);
  }
  return duplicates;
}
