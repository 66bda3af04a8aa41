import type {
  Counter,
  Histogram,
  Meter,
  ObservableCounter,
  ObservableGauge,
  ObservableUpDownCounter,
  UpDownCounter,
} from '@opentelemetry/api';

/** How a metric is measured; decides the Prometheus type (counter, gauge, histogram). */
export type MetricKind = 'counter' | 'updowncounter' | 'histogram' | 'gauge';

/**
 * One metric of the project. `name` follows OpenTelemetry naming (dots, no unit in the name);
 * the unit is a UCUM string (`ms`, `By`, or `{thing}` for counts).
 */
export interface MetricDefinition {
  readonly name: string;
  readonly unit: string;
  readonly kind: MetricKind;
  /** Attribute keys every data point carries (and nothing else, to bound cardinality). */
  readonly attributes: readonly string[];
  readonly description: string;
  /** Histogram bucket boundaries, when the SDK defaults (made for milliseconds) do not fit. */
  readonly boundaries?: readonly number[];
}

// Sizes span bytes to tens of MiB: powers of 4 from 256 B.
const SIZE_BOUNDARIES = [
  256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216, 67_108_864,
];
// Latencies from sub-millisecond (local fdatasync, in-process calls) to tens of seconds.
const LATENCY_BOUNDARIES = [
  0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000,
];

/**
 * Every metric of Woodstream, in one table: the streaming node, the coordinator and the WAL.
 * docs/metrics.md documents each of them (a unit test fails when one is missing there).
 * Instruments are created from these entries only, so names and units cannot drift apart.
 */
export const METRICS = {
  // --- streaming node ------------------------------------------------------------------------
  produceMessages: {
    name: 'woodstream.produce.messages',
    unit: '{message}',
    kind: 'counter',
    attributes: ['pchannel', 'outcome'],
    description: 'Messages a node answered on its produce streams; outcome is ok or the error code',
  },
  produceDeduplicated: {
    name: 'woodstream.produce.deduplicated',
    unit: '{message}',
    kind: 'counter',
    attributes: ['pchannel'],
    description:
      'Re-sent messages a node answered with the stored result of their first send instead of storing them again',
  },
  produceBytes: {
    name: 'woodstream.produce.bytes',
    unit: 'By',
    kind: 'counter',
    attributes: ['pchannel'],
    description: 'Payload bytes of messages a node appended successfully',
  },
  produceDuration: {
    name: 'woodstream.produce.duration',
    unit: 'ms',
    kind: 'histogram',
    attributes: ['pchannel'],
    description:
      'Time from receiving a produce frame (one message or a batch) to sending its answer, per frame',
    boundaries: LATENCY_BOUNDARIES,
  },
  produceInflight: {
    name: 'woodstream.produce.inflight',
    unit: '{message}',
    kind: 'updowncounter',
    attributes: ['pchannel'],
    description: 'Messages received on produce streams and not answered yet',
  },
  producersConnected: {
    name: 'woodstream.producers.connected',
    unit: '{stream}',
    kind: 'updowncounter',
    attributes: ['pchannel'],
    description: 'Open produce streams',
  },
  consumeMessages: {
    name: 'woodstream.consume.messages',
    unit: '{message}',
    kind: 'counter',
    attributes: ['pchannel'],
    description: 'Data messages a node delivered on its consume streams',
  },
  consumeBytes: {
    name: 'woodstream.consume.bytes',
    unit: 'By',
    kind: 'counter',
    attributes: ['pchannel'],
    description: 'Payload bytes of data messages a node delivered',
  },
  consumersConnected: {
    name: 'woodstream.consumers.connected',
    unit: '{stream}',
    kind: 'updowncounter',
    attributes: ['pchannel'],
    description: 'Open consume streams',
  },
  timeTickLag: {
    name: 'woodstream.timetick.lag',
    unit: 'ms',
    kind: 'gauge',
    attributes: ['pchannel'],
    description:
      'Wall clock minus the physical part of the last safe time tick, per WAL open on the node',
  },
  walChannels: {
    name: 'woodstream.wal.channels',
    unit: '{channel}',
    kind: 'gauge',
    attributes: ['state'],
    description: 'pchannels a node knows by WAL state: opening, open, closing, closed, failed',
  },
  nodeProduceInflightBytes: {
    name: 'woodstream.node.produce.inflight_bytes',
    unit: 'By',
    kind: 'gauge',
    attributes: [],
    description:
      'Payload bytes of unanswered produces over all streams of a node, against maxInflightBytesPerNode',
  },
  nodeStreamsOpen: {
    name: 'woodstream.node.streams.open',
    unit: '{stream}',
    kind: 'gauge',
    attributes: [],
    description: 'Produce and consume streams open on a node, against maxStreamsPerNode',
  },
  nodeStreamsRefused: {
    name: 'woodstream.node.streams.refused',
    unit: '{stream}',
    kind: 'counter',
    attributes: [],
    description:
      'Streams a node refused with RESOURCE_EXHAUSTED because maxStreamsPerNode were open',
  },
  // --- coordinator ---------------------------------------------------------------------------
  coordinatorActive: {
    name: 'woodstream.coordinator.active',
    unit: '1',
    kind: 'gauge',
    attributes: [],
    description: '1 when this coordinator holds the leader key, else 0',
  },
  assignmentVersion: {
    name: 'woodstream.coordinator.assignment.version',
    unit: '1',
    kind: 'gauge',
    attributes: ['part'],
    description:
      'Version of the published assignment; part=global counts activations, part=local snapshots since',
  },
  coordinatorNodes: {
    name: 'woodstream.coordinator.nodes',
    unit: '{node}',
    kind: 'gauge',
    attributes: ['state'],
    description: 'Nodes with a session by state: active, frozen, stopping',
  },
  coordinatorChannels: {
    name: 'woodstream.coordinator.channels',
    unit: '{channel}',
    kind: 'gauge',
    attributes: ['state'],
    description: 'pchannels by persisted state: UNINITIALIZED, ASSIGNING, ASSIGNED, UNAVAILABLE',
  },
  balanceRounds: {
    name: 'woodstream.coordinator.balance.rounds',
    unit: '{round}',
    kind: 'counter',
    attributes: [],
    description: 'Balance rounds the active coordinator ran',
  },
  balanceDuration: {
    name: 'woodstream.coordinator.balance.duration',
    unit: 'ms',
    kind: 'histogram',
    attributes: [],
    description: 'Time to plan one balance round and start its tasks',
    boundaries: LATENCY_BOUNDARIES,
  },
  channelMoves: {
    name: 'woodstream.coordinator.channel.moves',
    unit: '{move}',
    kind: 'counter',
    attributes: [],
    description: 'pchannel moves (new terms) a balance round started',
  },
  channelsNotHeld: {
    name: 'woodstream.coordinator.channels.not_held',
    unit: '{channel}',
    kind: 'counter',
    attributes: [],
    description:
      'ASSIGNED pchannels a node did not report holding (CollectStatus), marked UNAVAILABLE to be re-placed',
  },
  staleCopiesRemoved: {
    name: 'woodstream.coordinator.stale_copies.removed',
    unit: '{channel}',
    kind: 'counter',
    attributes: [],
    description:
      'pchannels a node reported holding (CollectStatus) that belong to another node or a later term, sent Remove',
  },
  // --- WAL (woodpecker) -----------------------------------------------------------------------
  walAppendDuration: {
    name: 'woodpecker.append.duration',
    unit: 'ms',
    kind: 'histogram',
    // Recorded per entry: attributes would cost a hash of the set on every record.
    attributes: [],
    description: 'Time from append to acknowledgement, per entry, over all logs of the process',
    boundaries: LATENCY_BOUNDARIES,
  },
  walAppendBytes: {
    name: 'woodpecker.append.bytes',
    unit: 'By',
    kind: 'counter',
    attributes: ['woodpecker.log', 'woodpecker.mode'],
    description: 'Payload bytes acknowledged',
  },
  walAppendEntries: {
    name: 'woodpecker.append.entries',
    unit: '{entry}',
    kind: 'counter',
    attributes: ['woodpecker.log', 'woodpecker.mode'],
    description: 'Entries acknowledged',
  },
  walFlushSize: {
    name: 'woodpecker.flush.size',
    unit: 'By',
    kind: 'histogram',
    attributes: ['woodpecker.log', 'woodpecker.mode'],
    description: 'Size of each block written',
    boundaries: SIZE_BOUNDARIES,
  },
  walFlushDuration: {
    name: 'woodpecker.flush.duration',
    unit: 'ms',
    kind: 'histogram',
    attributes: ['woodpecker.log', 'woodpecker.mode'],
    description: 'Time to make one write of blocks durable',
    boundaries: LATENCY_BOUNDARIES,
  },
  walErrors: {
    name: 'woodpecker.errors',
    unit: '{error}',
    kind: 'counter',
    attributes: ['woodpecker.log', 'woodpecker.mode', 'woodpecker.operation'],
    description: 'WAL writer failures by operation',
  },
  storageRequests: {
    name: 'woodpecker.storage.requests',
    unit: '{request}',
    kind: 'counter',
    attributes: ['woodpecker.store', 'woodpecker.operation', 'woodpecker.outcome'],
    description:
      'Requests to object storage (store=object) and the metadata store, etcd or embedded (store=metadata); outcome is ok or the error code',
  },
  storageDuration: {
    name: 'woodpecker.storage.duration',
    unit: 'ms',
    kind: 'histogram',
    attributes: ['woodpecker.store', 'woodpecker.operation', 'woodpecker.outcome'],
    description: 'Latency of requests to object storage and the metadata store',
    boundaries: LATENCY_BOUNDARIES,
  },
} as const satisfies Record<string, MetricDefinition>;

/** Key of an entry of {@link METRICS}. */
export type MetricKey = keyof typeof METRICS;

/**
 * The name Prometheus exposition uses for a metric: dots and dashes become `_`, and monotonic
 * counters get `_total`. Histograms expose `<name>_count`, `<name>_sum` and `<name>_bucket`.
 */
export function prometheusName(def: MetricDefinition): string {
  const base = def.name.replace(/[^a-zA-Z0-9_]/g, '_').replace(/_{2,}/g, '_');
  return def.kind === 'counter' && !base.endsWith('_total') ? `${base}_total` : base;
}

type KindOf<D extends MetricDefinition, K extends MetricKind> = D & { readonly kind: K };

/** A counter for a `counter` entry of {@link METRICS}. */
export function createCounter(meter: Meter, def: KindOf<MetricDefinition, 'counter'>): Counter {
  return meter.createCounter(def.name, { unit: def.unit, description: def.description });
}

/** An up-down counter for an `updowncounter` entry of {@link METRICS}. */
export function createUpDownCounter(
  meter: Meter,
  def: KindOf<MetricDefinition, 'updowncounter'>,
): UpDownCounter {
  return meter.createUpDownCounter(def.name, { unit: def.unit, description: def.description });
}

/**
 * An observable up-down counter for an `updowncounter` entry of {@link METRICS}: the callback
 * reports the current value at collection time, so a hot path only moves a plain number.
 */
export function createObservableUpDownCounter(
  meter: Meter,
  def: KindOf<MetricDefinition, 'updowncounter'>,
): ObservableUpDownCounter {
  return meter.createObservableUpDownCounter(def.name, {
    unit: def.unit,
    description: def.description,
  });
}

/** A histogram for a `histogram` entry of {@link METRICS}, with its bucket boundaries. */
export function createHistogram(
  meter: Meter,
  def: KindOf<MetricDefinition, 'histogram'>,
): Histogram {
  return meter.createHistogram(def.name, {
    unit: def.unit,
    description: def.description,
    ...(def.boundaries === undefined
      ? {}
      : { advice: { explicitBucketBoundaries: [...def.boundaries] } }),
  });
}

/** An observable gauge for a `gauge` entry of {@link METRICS}; add callbacks to it. */
export function createObservableGauge(
  meter: Meter,
  def: KindOf<MetricDefinition, 'gauge'>,
): ObservableGauge {
  return meter.createObservableGauge(def.name, { unit: def.unit, description: def.description });
}

/**
 * An observable counter for a `counter` entry of {@link METRICS}: the callback reports running
 * totals at collection time, so a hot path only bumps a plain number.
 */
export function createObservableCounter(
  meter: Meter,
  def: KindOf<MetricDefinition, 'counter'>,
): ObservableCounter {
  return meter.createObservableCounter(def.name, { unit: def.unit, description: def.description });
}
