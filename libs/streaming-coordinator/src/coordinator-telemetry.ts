import { metrics, type BatchObservableCallback, type Observable } from '@opentelemetry/api';
import {
  createCounter,
  createHistogram,
  createObservableGauge,
  METRICS,
  SCOPES,
} from '@woodstream/observability';
import type { PChannelState } from '@woodstream/streaming';

/** What the gauges read from the coordinator at collection time. */
export interface CoordinatorView {
  readonly isActive: boolean;
  status(): {
    version: { global: number; local: number };
    channelsByState: Record<PChannelState, number>;
  };
  listNodes(): readonly { stopping: boolean; frozen: boolean }[];
}

/** The coordinator's instruments (names in the METRICS table). */
export interface CoordinatorTelemetry {
  /** One balance round: how long planning and starting its tasks took, and how many moves. */
  recordBalanceRound(durationMs: number, moves: number): void;
  /** A channel ASSIGNED to a node that did not report holding it. */
  recordChannelNotHeld(): void;
  /** A node reported a channel that belongs to another node or a later term: sent Remove. */
  recordStaleCopyRemoved(): void;
  /** Detaches the gauges' callback (on stop). */
  close(): void;
}

/**
 * Creates the instruments through the OpenTelemetry API: no-ops unless the process registered
 * its telemetry before the coordinator started. The gauges are observed at collection time
 * from `view`, so they never go stale.
 */
export function createCoordinatorTelemetry(view: CoordinatorView): CoordinatorTelemetry {
  const meter = metrics.getMeter(SCOPES.coordinator);
  const rounds = createCounter(meter, METRICS.balanceRounds);
  const duration = createHistogram(meter, METRICS.balanceDuration);
  const moves = createCounter(meter, METRICS.channelMoves);
  const notHeld = createCounter(meter, METRICS.channelsNotHeld);
  const staleCopies = createCounter(meter, METRICS.staleCopiesRemoved);
  const active = createObservableGauge(meter, METRICS.coordinatorActive);
  const version = createObservableGauge(meter, METRICS.assignmentVersion);
  const nodes = createObservableGauge(meter, METRICS.coordinatorNodes);
  const channels = createObservableGauge(meter, METRICS.coordinatorChannels);
  const observables: Observable[] = [active, version, nodes, channels];
  const callback: BatchObservableCallback = (result) => {
    const status = view.status();
    result.observe(active, view.isActive ? 1 : 0);
    result.observe(version, status.version.global, { part: 'global' });
    result.observe(version, status.version.local, { part: 'local' });
    const byState = { active: 0, frozen: 0, stopping: 0 };
    for (const node of view.listNodes()) {
      // Stopping wins over frozen: the node is leaving either way.
      byState[node.stopping ? 'stopping' : node.frozen ? 'frozen' : 'active']++;
    }
    for (const [state, n] of Object.entries(byState)) result.observe(nodes, n, { state });
    for (const [state, n] of Object.entries(status.channelsByState))
      result.observe(channels, n, { state });
  };
  meter.addBatchObservableCallback(callback, observables);
  return {
    recordBalanceRound(durationMs, moveCount) {
      rounds.add(1);
      duration.record(durationMs);
      if (moveCount > 0) moves.add(moveCount);
    },
    recordChannelNotHeld() {
      notHeld.add(1);
    },
    recordStaleCopyRemoved() {
      staleCopies.add(1);
    },
    close() {
      meter.removeBatchObservableCallback(callback, observables);
    },
  };
}
