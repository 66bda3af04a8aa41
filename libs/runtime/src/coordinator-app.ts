import { Server, ServerCredentials } from '@grpc/grpc-js';
import { AssignmentServiceService } from '@woodstream/proto';
import {
  createAssignmentServiceHandlers,
  StreamingCoordinator,
} from '@woodstream/streaming-coordinator';
import type { MetadataStore } from '@woodstream/woodpecker';
import type { Logger } from './logger.js';
import type { CoordinatorConfig } from './schemas.js';
import { openMetadataStore } from './stores.js';

export interface CoordinatorApp {
  readonly coordinator: StreamingCoordinator;
  /** The metadata store holding all coordinator state (readiness depends on reaching it). */
  readonly metadata: MetadataStore;
  /** host:port clients connect to. */
  readonly address: string;
  stop(): Promise<void>;
}

type CoordinatorSettings = Pick<
  CoordinatorConfig,
  | 'pchannelCount'
  | 'pchannelPrefix'
  | 'sessionTtlMs'
  | 'balanceIntervalMs'
  | 'moveCooldownMs'
  | 'maxMovesPerRound'
  | 'operationTimeoutMs'
>;

/** Starts a coordinator (active or standby) and its gRPC server. */
export async function startCoordinatorApp(
  settings: CoordinatorSettings,
  grpc: { host: string; port: number },
  logger: Logger,
  shared: { metadata?: MetadataStore; metadataConfig?: CoordinatorConfig['metadata'] },
): Promise<CoordinatorApp> {
  const metadata =
    shared.metadata ??
    (await openMetadataStore(shared.metadataConfig as CoordinatorConfig['metadata']));
  const coordinator = await StreamingCoordinator.start(
    {
      pchannelCount: settings.pchannelCount,
      pchannelPrefix: settings.pchannelPrefix,
      sessionTtlMs: settings.sessionTtlMs,
      balanceIntervalMs: settings.balanceIntervalMs,
      moveCooldownMs: settings.moveCooldownMs,
      maxMovesPerRound: settings.maxMovesPerRound,
      operationTimeoutMs: settings.operationTimeoutMs,
    },
    { metadata, logger },
  );
  const server = new Server();
  server.addService(
    AssignmentServiceService,
    createAssignmentServiceHandlers(coordinator, { logger }),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${grpc.host}:${grpc.port}`,
      ServerCredentials.createInsecure(),
      (err, bound) => (err ? reject(err) : resolve(bound)),
    ),
  );
  return {
    coordinator,
    metadata,
    address: `${grpc.host}:${port}`,
    async stop() {
      // Stop serving first so clients move on, then hand leadership over.
      server.forceShutdown();
      await coordinator.stop();
      if (shared.metadata === undefined) await metadata.close();
    },
  };
}
