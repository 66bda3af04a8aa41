import { Type, type Static } from '@sinclair/typebox';
import { MESSAGE_BYTES } from '@woodstream/streaming';

// One schema per service, built from shared parts. Every field has a default, a unit in its
// name, a range, and a description; unknown keys are rejected.

const MiB = 1024 * 1024;

export const MetadataSchema = Type.Object(
  {
    kind: Type.Union([Type.Literal('embedded'), Type.Literal('etcd')], {
      default: 'embedded',
      description: 'embedded: a file on local disk, for one process; etcd: a cluster',
    }),
    embeddedPath: Type.String({
      default: './data/meta.log',
      description: 'File of the embedded metadata store',
    }),
    etcdEndpoints: Type.Array(Type.String(), {
      default: ['http://127.0.0.1:2379'],
      description: 'etcd client URLs (comma-separated in env)',
    }),
    rootPrefix: Type.String({
      default: '/woodstream/',
      description: 'All keys of this cluster live under this prefix',
    }),
    requestTimeoutMs: Type.Integer({
      default: 10000,
      minimum: 100,
      maximum: 300000,
      description: 'Per-request etcd timeout',
    }),
  },
  { default: {}, additionalProperties: false },
);

export const StorageSchema = Type.Object(
  {
    mode: Type.Union([Type.Literal('local'), Type.Literal('object')], {
      default: 'local',
      description: 'Where WAL data lives',
    }),
    localDir: Type.String({
      default: './data/wal',
      description: 'Directory of segment files (local mode)',
    }),
    localDirectIo: Type.Boolean({
      default: true,
      description:
        'Local mode: write segments with direct I/O where the file system supports it (else page-cache writes)',
    }),
    s3: Type.Object(
      {
        endpoint: Type.String({ default: '', description: 'S3 endpoint URL; empty for AWS' }),
        region: Type.String({ default: 'us-east-1', description: 'S3 region' }),
        bucket: Type.String({ default: '', description: 'Bucket (object mode)' }),
        accessKeyId: Type.String({ default: '', description: 'Access key id' }),
        secretAccessKey: Type.String({
          default: '',
          secret: true,
          description: 'Secret access key (never logged)',
        }),
        keyPrefix: Type.String({ default: '', description: 'Prefix of every object key' }),
        conditionalWrites: Type.Union(
          [Type.Literal('auto'), Type.Literal('enabled'), Type.Literal('disabled')],
          {
            default: 'auto',
            description: 'Detect, require or disable If-None-Match fencing',
          },
        ),
      },
      { default: {}, additionalProperties: false },
    ),
  },
  { default: {}, additionalProperties: false },
);

export const WalSchema = Type.Object(
  {
    maxEntryBytes: Type.Integer({
      default: 16 * MiB,
      minimum: 1,
      maximum: 256 * MiB,
      description: 'Largest WAL entry',
    }),
    flushAgeMs: Type.Integer({
      default: 200,
      minimum: 1,
      maximum: 60000,
      description: 'Object mode: flush a partial block after this long',
    }),
    maxBlockBytes: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 64 * MiB,
      description:
        'Target block size (0: 4 MiB in object mode, 1 MiB in local mode; else at least 4096)',
    }),
    maxInflightBytes: Type.Integer({
      default: 64 * MiB,
      minimum: MiB,
      maximum: 4096 * MiB,
      description: 'Buffered + uploading bytes per writer before appends wait',
    }),
    maxSegmentBytes: Type.Integer({
      default: 256 * MiB,
      minimum: 65536,
      maximum: 65536 * MiB,
      description: 'Roll a segment at this size',
    }),
    maxSegmentAgeMs: Type.Integer({
      default: 600000,
      minimum: 100,
      maximum: 604800000,
      description: 'Roll a non-empty segment at this age',
    }),
    progressIntervalMs: Type.Integer({
      // The service's own readers share the writer's process and are woken in memory; this
      // only sets how soon readers in other processes hear of new entries, at one metadata
      // write per interval per busy log.
      default: 1000,
      minimum: 1,
      maximum: 10000,
      description:
        'Under steady writes, publish WAL progress for readers in other processes at most this often',
    }),
    maxSegmentBlocks: Type.Integer({
      default: 10000,
      minimum: 1,
      maximum: 1000000,
      description: 'Roll a segment at this many blocks (bounds its in-memory block index)',
    }),
    readBatchBytes: Type.Integer({
      default: 4 * MiB,
      minimum: 4096,
      maximum: 256 * MiB,
      description: 'Bytes a reader (a consumer catching up) reads from storage per batch',
    }),
    tailCacheBytes: Type.Integer({
      default: 8 * MiB,
      minimum: 0,
      maximum: 1024 * MiB,
      description:
        'Recently acknowledged bytes per WAL kept in memory for consumers at the live end (only while one reads that WAL)',
    }),
    writerSessionTtlMs: Type.Integer({
      default: 10000,
      minimum: 1000,
      maximum: 300000,
      description:
        "Lease of a WAL writer's session key: maintenance leaves a log alone while it lives",
    }),
    retentionMs: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 10 * 365 * 24 * 3600_000,
      description:
        'Truncate WAL segments completed at least this long ago, keeping the newest completed one per WAL (applied by maintenance; 0: keep everything)',
    }),
    maintenanceIntervalMs: Type.Integer({
      default: 60000,
      minimum: 0,
      maximum: 3600000,
      description:
        'Seal idle segments of logs whose writer is gone, this often (0: off; else at least 1000)',
    }),
  },
  { default: {}, additionalProperties: false },
);

/** Node settings that standalone exposes too. */
const SharedNodeFields = {
  timeTickIntervalMs: Type.Integer({
    default: 200,
    minimum: 10,
    maximum: 10000,
    description: 'Idle time-tick interval',
  }),
  maxMessageBytes: Type.Integer({
    default: MESSAGE_BYTES.default,
    minimum: 1,
    maximum: MESSAGE_BYTES.max,
    description: 'Largest produced payload',
  }),
  maxVChannelsPerPChannel: Type.Integer({
    default: 1024,
    minimum: 1,
    maximum: 65536,
    description: 'Vchannels one pchannel may carry; a produce to one more is refused',
  }),
  maxInflightPerProducer: Type.Integer({
    default: 4096,
    minimum: 1,
    maximum: 65536,
    description: 'Unanswered produces per stream before reading pauses',
  }),
  dedupWindowEntries: Type.Integer({
    default: 8192,
    minimum: 0,
    maximum: 1048576,
    description:
      'Recent messages per pchannel whose re-sends by their producer are answered with the stored result instead of stored twice (0: off)',
  }),
  dedupRecoveryBytes: Type.Integer({
    default: 64 * MiB,
    minimum: 0,
    maximum: 1024 * MiB,
    description:
      'On taking a pchannel over: about how much of its log tail is read to rebuild that memory (also at most dedupWindowEntries entries)',
  }),
  maxInflightBytesPerProducer: Type.Integer({
    default: 64 * MiB,
    minimum: MiB,
    maximum: 1024 * MiB,
    description: 'Payload bytes of unanswered produces per stream before reading pauses',
  }),
  maxInflightBytesPerNode: Type.Integer({
    default: 512 * MiB,
    minimum: MiB,
    maximum: 64 * 1024 * MiB,
    description:
      'Payload bytes of unanswered produces over all streams of the node before streams that send more pause',
  }),
  maxStreamsPerNode: Type.Integer({
    default: 2048,
    minimum: 1,
    maximum: 65536,
    description:
      'Produce and consume streams open at once on the node; a new one past it is refused (RESOURCE_EXHAUSTED, retried by clients)',
  }),
  flowControlWindowBytes: Type.Integer({
    default: 4 * MiB,
    minimum: 64 * 1024,
    maximum: 64 * MiB,
    description:
      'HTTP/2 receive window of the node per stream and per connection: bytes a producer may have in flight before the node reads them',
  }),
};

/** The HTTP server every process runs: /healthz, /readyz, /metrics (and the admin API on a coordinator). */
function httpSchema(port: number, what: string) {
  return Type.Object(
    {
      host: Type.String({
        default: '127.0.0.1',
        description: `Interface the ${what} HTTP server listens on`,
      }),
      port: Type.Integer({
        default: port,
        minimum: 0,
        maximum: 65535,
        description: 'HTTP port for /healthz, /readyz, /metrics (0: any free port)',
      }),
    },
    { default: {}, additionalProperties: false },
  );
}

const AdminFields = {
  adminTokenFile: Type.String({
    default: '',
    description:
      'File holding the admin API bearer token (mutating routes require it); empty: no token',
  }),
  adminProtectReads: Type.Boolean({
    default: false,
    description: 'Also require the admin token for read-only admin routes',
  }),
};

const TelemetryFields = {
  otlpEndpoint: Type.String({
    default: '',
    description:
      'OTLP/HTTP endpoint traces are exported to; empty: OTEL_EXPORTER_OTLP_ENDPOINT, else none',
  }),
  logLevel: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace'].map((l) => Type.Literal(l)),
    { default: 'info', description: 'Lowest log level written' },
  ),
};

export const NodeSchema = Type.Object(
  {
    grpc: Type.Object(
      {
        host: Type.String({ default: '127.0.0.1', description: 'Interface the node listens on' }),
        port: Type.Integer({
          default: 19531,
          minimum: 0,
          maximum: 65535,
          description: 'gRPC port (0: any free port)',
        }),
        advertiseAddress: Type.String({
          default: '',
          description: 'host:port others use to reach this node; empty: host:port',
        }),
      },
      { default: {}, additionalProperties: false },
    ),
    http: httpSchema(9092, 'node'),
    ...TelemetryFields,
    sessionTtlMs: Type.Integer({
      default: 10000,
      minimum: 1000,
      maximum: 300000,
      description: 'Session lease TTL: how fast a dead node is noticed',
    }),
    ...SharedNodeFields,
    drainTimeoutMs: Type.Integer({
      default: 30000,
      minimum: 0,
      maximum: 600000,
      description: 'On SIGTERM: wait this long for channels to move away',
    }),
    metadata: MetadataSchema,
    storage: StorageSchema,
    wal: WalSchema,
  },
  { additionalProperties: false },
);
export type NodeConfig = Static<typeof NodeSchema>;

const CoordinatorFields = {
  pchannelCount: Type.Integer({
    default: 16,
    minimum: 1,
    maximum: 1024,
    description: 'pchannels of a new cluster (fixed once the cluster exists)',
  }),
  pchannelPrefix: Type.String({ default: 'wal', description: 'Name prefix of pchannels' }),
  balanceIntervalMs: Type.Integer({
    default: 5000,
    minimum: 100,
    maximum: 3600000,
    description: 'Balance round timer; each tick also asks every node which channels it holds',
  }),
  moveCooldownMs: Type.Integer({
    default: 30000,
    minimum: 0,
    maximum: 86400000,
    description: 'A channel moved by rebalancing stays put this long',
  }),
  maxMovesPerRound: Type.Integer({
    default: 4,
    minimum: 0,
    maximum: 1024,
    description: 'Rebalancing moves per round',
  }),
  operationTimeoutMs: Type.Integer({
    default: 30000,
    minimum: 100,
    maximum: 600000,
    description: 'Deadline of one Assign/Remove call',
  }),
};

export const CoordinatorSchema = Type.Object(
  {
    grpc: Type.Object(
      {
        host: Type.String({
          default: '127.0.0.1',
          description: 'Interface the coordinator listens on',
        }),
        port: Type.Integer({
          default: 19530,
          minimum: 0,
          maximum: 65535,
          description: 'gRPC port (clients connect here)',
        }),
      },
      { default: {}, additionalProperties: false },
    ),
    http: httpSchema(9091, 'coordinator'),
    ...AdminFields,
    ...TelemetryFields,
    sessionTtlMs: Type.Integer({
      default: 10000,
      minimum: 1000,
      maximum: 300000,
      description: 'Leader lease TTL: how fast a standby takes over',
    }),
    ...CoordinatorFields,
    metadata: MetadataSchema,
  },
  { additionalProperties: false },
);
export type CoordinatorConfig = Static<typeof CoordinatorSchema>;

export const StandaloneSchema = Type.Object(
  {
    dataDir: Type.String({ default: './data', description: 'Metadata and WAL files live here' }),
    directIo: Type.Boolean({
      default: true,
      description:
        'Write WAL segments with direct I/O where the file system supports it (else page-cache writes)',
    }),
    host: Type.String({ default: '127.0.0.1', description: 'Interface both servers listen on' }),
    advertiseHost: Type.String({
      default: '',
      description:
        'Host clients use to reach the node (e.g. a Service name); empty: host, or 127.0.0.1 when host is 0.0.0.0 or ::',
    }),
    coordinatorPort: Type.Integer({
      default: 19530,
      minimum: 0,
      maximum: 65535,
      description: 'Coordinator gRPC port (clients connect here)',
    }),
    nodePort: Type.Integer({
      default: 19531,
      minimum: 0,
      maximum: 65535,
      description: 'Streaming node gRPC port',
    }),
    httpPort: Type.Integer({
      default: 9091,
      minimum: 0,
      maximum: 65535,
      description: 'HTTP port for /healthz, /readyz, /metrics and the admin API (0: any free port)',
    }),
    ...AdminFields,
    ...TelemetryFields,
    ...SharedNodeFields,
    ...CoordinatorFields,
    pchannelCount: Type.Integer({
      default: 4,
      minimum: 1,
      maximum: 1024,
      description: 'pchannels of a new standalone cluster (fixed once it exists)',
    }),
    wal: WalSchema,
  },
  { additionalProperties: false },
);
export type StandaloneConfig = Static<typeof StandaloneSchema>;
