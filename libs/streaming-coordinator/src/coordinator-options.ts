import { MAX_CHANNEL_NAME_LENGTH, pchannelName, StreamingError } from '@woodstream/streaming';

/**
 * Settings of a {@link StreamingCoordinator}. Every field is optional; {@link resolveCoordinatorOptions}
 * applies the documented defaults and rejects out-of-range values.
 */
export interface CoordinatorOptions {
  /**
   * Number of pchannels, used only when this coordinator creates the cluster. Afterwards the
   * count is read from the cluster record forever (vchannels hash onto it), and a different
   * configured value is ignored with a warning. @default 16 (min 1, max 1024)
   */
  pchannelCount?: number;
  /** Name prefix of the pchannels created with the cluster (`<prefix>-0000`, …). @default 'wal' */
  pchannelPrefix?: string;
  /** TTL of this coordinator's leader lease: a crashed leader is replaced after about this long. @default 10000 (min 1000, max 300000) */
  sessionTtlMs?: number;
  /** Period of the balance timer; node changes, reports and admin calls trigger rounds earlier. Each tick also asks every node which channels it holds. @default 5000 (min 10, max 3600000) */
  balanceIntervalMs?: number;
  /** A channel moved within this long is not moved again by rebalancing (explicit moves ignore it). @default 30000 (min 0, max 86400000) */
  moveCooldownMs?: number;
  /** Channels moved per balance round to even out load (lost channels are always re-placed). @default 4 (min 0, max 1024) */
  maxMovesPerRound?: number;
  /** Deadline of each Assign/Remove/CollectStatus call to a node. @default 30000 (min 100, max 600000) */
  operationTimeoutMs?: number;
  /** First retry delay of a channel whose assignment failed. @default 100 (min 1, max 60000) */
  channelBackoffInitialMs?: number;
  /** Cap of a channel's retry delay. @default 10000 (min channelBackoffInitialMs, max 600000) */
  channelBackoffMaxMs?: number;
  /** Version of this coordinator process, published in its leader record. @default '0.0.0' */
  version?: string;
  /** Unique id of this coordinator process, shown in the leader record. @default a random UUID */
  coordinatorId?: string;
  /** Concurrent AssignmentDiscover streams served; more are refused with RESOURCE_EXHAUSTED. @default 4096 (min 1, max 65536) */
  maxDiscoverStreams?: number;
  /** Explicit move operations remembered for the admin API; the oldest are forgotten first. @default 1024 (min 1, max 65536) */
  maxOperations?: number;
}

/** {@link CoordinatorOptions} with every default applied. Frozen. */
export type ResolvedCoordinatorOptions = Readonly<Required<CoordinatorOptions>>;

interface IntRange {
  key: keyof CoordinatorOptions;
  def: number;
  min: number;
  max: number;
}

const INT_RANGES: readonly IntRange[] = [
  { key: 'pchannelCount', def: 16, min: 1, max: 1024 },
  { key: 'sessionTtlMs', def: 10_000, min: 1_000, max: 300_000 },
  { key: 'balanceIntervalMs', def: 5_000, min: 10, max: 3_600_000 },
  { key: 'moveCooldownMs', def: 30_000, min: 0, max: 86_400_000 },
  { key: 'maxMovesPerRound', def: 4, min: 0, max: 1024 },
  { key: 'operationTimeoutMs', def: 30_000, min: 100, max: 600_000 },
  { key: 'channelBackoffInitialMs', def: 100, min: 1, max: 60_000 },
  { key: 'channelBackoffMaxMs', def: 10_000, min: 1, max: 600_000 },
  { key: 'maxDiscoverStreams', def: 4096, min: 1, max: 65_536 },
  { key: 'maxOperations', def: 1024, min: 1, max: 65_536 },
];

/**
 * Applies defaults and validates. Throws StreamingError('INVALID_ARGUMENT') that lists every
 * problem at once, so an operator fixes a config in one go.
 */
export function resolveCoordinatorOptions(
  options: CoordinatorOptions = {},
): ResolvedCoordinatorOptions {
  const problems: string[] = [];
  const ints: Record<string, number> = {};
  for (const { key, def, min, max } of INT_RANGES) {
    const value: unknown = options[key] ?? def;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      problems.push(`${key} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
    }
    ints[key] = typeof value === 'number' ? value : def;
  }
  const initial = ints['channelBackoffInitialMs'] ?? 0;
  const cap = ints['channelBackoffMaxMs'] ?? 0;
  if (cap < initial) {
    problems.push(`channelBackoffMaxMs (${cap}) must be >= channelBackoffInitialMs (${initial})`);
  }
  const prefix: unknown = options.pchannelPrefix ?? 'wal';
  // The longest generated name must still be a valid channel name (it doubles as a WAL log name).
  const longest = typeof prefix === 'string' ? pchannelName(prefix, 9999) : '';
  if (
    typeof prefix !== 'string' ||
    !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(prefix) ||
    longest.length > MAX_CHANNEL_NAME_LENGTH
  ) {
    problems.push(
      `pchannelPrefix must be 1-${MAX_CHANNEL_NAME_LENGTH - 5} characters of A-Z a-z 0-9 . _ -, starting with a letter or digit, got ${JSON.stringify(prefix)}`,
    );
  }
  const version: unknown = options.version ?? '0.0.0';
  if (typeof version !== 'string' || version.length === 0 || version.length > 64) {
    problems.push(`version must be a string of 1-64 characters, got ${JSON.stringify(version)}`);
  }
  const coordinatorId: unknown = options.coordinatorId ?? crypto.randomUUID();
  if (
    typeof coordinatorId !== 'string' ||
    coordinatorId.length === 0 ||
    coordinatorId.length > 128
  ) {
    problems.push(
      `coordinatorId must be a string of 1-128 characters, got ${JSON.stringify(coordinatorId)}`,
    );
  }
  if (problems.length > 0) {
    throw new StreamingError(
      'INVALID_ARGUMENT',
      `invalid coordinator options: ${problems.join('; ')}`,
    );
  }
  return Object.freeze({
    pchannelCount: ints['pchannelCount'] as number,
    pchannelPrefix: prefix as string,
    sessionTtlMs: ints['sessionTtlMs'] as number,
    balanceIntervalMs: ints['balanceIntervalMs'] as number,
    moveCooldownMs: ints['moveCooldownMs'] as number,
    maxMovesPerRound: ints['maxMovesPerRound'] as number,
    operationTimeoutMs: ints['operationTimeoutMs'] as number,
    channelBackoffInitialMs: initial,
    channelBackoffMaxMs: cap,
    maxDiscoverStreams: ints['maxDiscoverStreams'] as number,
    maxOperations: ints['maxOperations'] as number,
    version: version as string,
    coordinatorId: coordinatorId as string,
  });
}
