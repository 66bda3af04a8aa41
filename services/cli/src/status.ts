import { credentials } from '@grpc/grpc-js';
import { AssignmentServiceClient, type FullAssignment } from '@woodstream/proto';
import { fromServiceError } from '@woodstream/streaming';
import { checkArgs, stringOption, type ParsedArgs } from './args.js';
import type { CliIo } from './cli.js';
import { DEFAULT_COORDINATOR } from './commands.js';

/** Reads one assignment snapshot from the coordinator. */
export function fetchAssignment(coordinator: string, timeoutMs: number): Promise<FullAssignment> {
  const client = new AssignmentServiceClient(coordinator, credentials.createInsecure());
  return new Promise<FullAssignment>((resolve, reject) => {
    const call = client.assignmentDiscover();
    const timer = setTimeout(() => {
      call.cancel();
      reject(new Error(`no answer from the coordinator at ${coordinator} within ${timeoutMs} ms`));
    }, timeoutMs);
    call.on('data', (frame: { response?: { $case: string; fullAssignment?: FullAssignment } }) => {
      if (frame.response?.$case !== 'fullAssignment' || frame.response.fullAssignment === undefined)
        return;
      clearTimeout(timer);
      resolve(frame.response.fullAssignment);
      call.write({ command: { $case: 'close', close: {} } });
      call.end();
    });
    call.on('error', (err) => {
      clearTimeout(timer);
      reject(fromServiceError(err));
    });
  }).finally(() => client.close());
}

/** `status`: nodes and the channels they hold, as a table or (--json) as JSON. */
export async function status(args: ParsedArgs, io: CliIo): Promise<number> {
  checkArgs(args, 'status', ['coordinator', 'json']);
  const coordinator = stringOption(args, 'coordinator', DEFAULT_COORDINATOR);
  let snapshot: FullAssignment;
  try {
    snapshot = await fetchAssignment(coordinator, 10_000);
  } catch (err) {
    io.err(`woodstream status: ${err instanceof Error ? err.message : String(err)}`);
    io.err('Is Woodstream running? Start it with `npm start` or pass --coordinator HOST:PORT.');
    return 1;
  }
  const nodes = snapshot.assignments.map((a) => ({
    serverId: Number(a.node?.serverId ?? 0),
    address: a.node?.address ?? '',
    channels: a.channels.map((c) => ({ name: c.name, term: Number(c.term) })),
  }));
  const assigned = new Set(nodes.flatMap((n) => n.channels.map((c) => c.name)));
  if (args.options.get('json') === true) {
    io.out(
      JSON.stringify({
        version: {
          global: String(snapshot.version?.global ?? 0),
          local: String(snapshot.version?.local ?? 0),
        },
        pchannels: snapshot.pchannels,
        nodes,
        unassigned: snapshot.pchannels.filter((p) => !assigned.has(p)),
      }),
    );
    return 0;
  }
  io.out(
    `coordinator ${coordinator}: ${snapshot.pchannels.length} pchannels, ${nodes.length} nodes`,
  );
  for (const n of nodes) {
    io.out(
      `  node ${n.serverId} ${n.address}: ${n.channels.length} channels ${n.channels.map((c) => `${c.name}@${c.term}`).join(' ')}`,
    );
  }
  const unassigned = snapshot.pchannels.filter((p) => !assigned.has(p));
  if (unassigned.length > 0) io.out(`  unassigned: ${unassigned.join(' ')}`);
  return 0;
}
