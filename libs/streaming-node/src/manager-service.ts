import type { ManagerServiceServer } from '@woodstream/proto';
import { StreamingError, toServiceError, validateChannelName } from '@woodstream/streaming';
import type { NodeTelemetry } from './node-telemetry.js';
import type { WalManager } from './wal-manager.js';

/** `ManagerService`: the coordinator assigns and removes channels here. */
export function createManagerService(
  manager: WalManager,
  isStopping: () => boolean,
  telemetry: NodeTelemetry,
): ManagerServiceServer {
  return {
    assign(call, callback) {
      const info = call.request.pchannel;
      void (async () => {
        if (info === undefined)
          throw new StreamingError('INVALID_ARGUMENT', 'assign needs a pchannel');
        if (isStopping()) throw new StreamingError('ON_SHUTDOWN', 'the node is shutting down');
        await manager.assign(validateChannelName(info.name, 'pchannel'), Number(info.term));
      })().then(
        () => callback(null, {}),
        (err: unknown) => callback(toServiceError(err)),
      );
    },
    remove(call, callback) {
      const info = call.request.pchannel;
      void (async () => {
        if (info === undefined)
          throw new StreamingError('INVALID_ARGUMENT', 'remove needs a pchannel');
        await manager.remove(validateChannelName(info.name, 'pchannel'), Number(info.term));
      })().then(
        () => callback(null, {}),
        (err: unknown) => callback(toServiceError(err)),
      );
    },
    collectStatus(_call, callback) {
      callback(null, {
        stopping: isStopping(),
        channels: manager.openChannels().map((wal) => {
          const streams = telemetry.channel(wal.name);
          return {
            pchannel: { name: wal.name, term: BigInt(wal.term), accessMode: 1 },
            timeTick: wal.currentTick,
            producers: streams.producers,
            consumers: streams.consumers,
          };
        }),
      });
    },
  };
}
