import type { ServerDuplexStream } from '@grpc/grpc-js';
import {
  AccessMode,
  type AssignmentDiscoverRequest,
  type AssignmentDiscoverResponse,
  type AssignmentServiceServer,
  type FullAssignment,
} from '@woodstream/proto';
import { StreamingError, toServiceError } from '@woodstream/streaming';
import type { CoordinatorLogger } from './coordinator-logger.js';
import { noopLogger } from './coordinator-logger.js';
import type { AssignmentSnapshot, StreamingCoordinator } from './streaming-coordinator.js';

/** Error reports handled at once per stream; more are dropped (clients report each term once and retry). */
const MAX_PENDING_REPORTS_PER_STREAM = 16;

/**
 * `AssignmentService` handlers for `server.addService(AssignmentServiceService, handlers)`.
 *
 * Only the ACTIVE coordinator serves: on a standby (or when this coordinator stops being
 * active) the stream fails with ON_SHUTDOWN (gRPC UNAVAILABLE, retryable), so clients go to
 * the active one. A standby could serve the stored snapshot, but its `local` version would not
 * be ordered with the active one's, and clients would mis-order snapshots.
 *
 * On connect the current full assignment is pushed, then a new one on every change; bursts
 * coalesce and a slow reader only ever gets the latest (no queue). `report_error` marks the
 * channel UNAVAILABLE if it is still ASSIGNED at the reported term; `close` is answered with
 * `close` and the stream ends. At most `coordinator.maxDiscoverStreams` streams run at once;
 * more fail with RESOURCE_EXHAUSTED.
 */
export function createAssignmentServiceHandlers(
  coordinator: StreamingCoordinator,
  options: { logger?: CoordinatorLogger } = {},
): AssignmentServiceServer {
  const log = options.logger ?? noopLogger;
  let streams = 0;
  return {
    assignmentDiscover(
      call: ServerDuplexStream<AssignmentDiscoverRequest, AssignmentDiscoverResponse>,
    ) {
      if (streams >= coordinator.maxDiscoverStreams) {
        call.emit(
          'error',
          toServiceError(
            new StreamingError('RESOURCE_EXHAUSTED', 'too many AssignmentDiscover streams'),
          ),
        );
        return;
      }
      streams++;
      const controller = new AbortController();
      const signal = controller.signal;
      let isEnded = false;
      let pendingReports = 0;
      const finish = (): void => {
        if (isEnded) return;
        isEnded = true;
        streams--;
        controller.abort(new StreamingError('ON_SHUTDOWN', 'the stream ended'));
      };
      call.on('cancelled', finish);
      call.on('error', finish);
      call.on('close', finish);
      call.on('end', () => {
        // The client half-closed without `close`: end our side too.
        if (!isEnded) {
          finish();
          call.end();
        }
      });
      call.on('data', (request: AssignmentDiscoverRequest) => {
        const command = request.command;
        if (command === undefined || isEnded) return;
        switch (command.$case) {
          case 'close':
            finish();
            call.write({ response: { $case: 'close', close: {} } });
            call.end();
            return;
          case 'reportError': {
            const pchannel = command.reportError.pchannel;
            if (pchannel === undefined) return;
            if (pendingReports >= MAX_PENDING_REPORTS_PER_STREAM) {
              log.debug('error report dropped: too many pending', { pchannel: pchannel.name });
              return;
            }
            pendingReports++;
            coordinator
              .reportChannelError(pchannel.name, Number(pchannel.term), { signal })
              .then(
                (outcome) =>
                  log.debug('error report handled', {
                    pchannel: pchannel.name,
                    term: Number(pchannel.term),
                    outcome,
                  }),
                (err: unknown) =>
                  log.debug('error report not handled', {
                    pchannel: pchannel.name,
                    error: err instanceof Error ? err.message : String(err),
                  }),
              )
              .finally(() => pendingReports--);
            return;
          }
        }
      });
      void (async () => {
        try {
          for await (const snapshot of coordinator.assignments(signal)) {
            if (isEnded) return;
            const fullAssignment = toFullAssignment(snapshot);
            if (!call.write({ response: { $case: 'fullAssignment', fullAssignment } })) {
              await waitForDrain(call, signal);
            }
          }
        } catch (err) {
          if (isEnded) return;
          finish();
          call.emit('error', toServiceError(err));
        }
      })();
    },
  };
}

/** Converts a snapshot to the wire form (uint64 fields are bigint there). */
export function toFullAssignment(snapshot: AssignmentSnapshot): FullAssignment {
  return {
    version: { global: BigInt(snapshot.version.global), local: BigInt(snapshot.version.local) },
    pchannelCount: snapshot.pchannels.length,
    pchannels: [...snapshot.pchannels],
    assignments: snapshot.assignments.map((a) => ({
      node: { serverId: BigInt(a.node.serverId), address: a.node.address },
      channels: a.channels.map((c) => ({
        name: c.name,
        term: BigInt(c.term),
        accessMode: AccessMode.ACCESS_MODE_READ_WRITE,
      })),
    })),
  };
}

function waitForDrain(
  call: ServerDuplexStream<unknown, unknown>,
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      call.off('drain', onDrain);
      reject(signal.reason as Error);
    };
    const onDrain = (): void => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    call.once('drain', onDrain);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
