import {
  metrics,
  trace,
  type Attributes,
  type BatchObservableCallback,
  type Counter,
  type Histogram,
  type Meter,
  type Observable,
  type Tracer,
  type UpDownCounter,
} from '@opentelemetry/api';
import {
  createCounter,
  createHistogram,
  createObservableCounter,
  createObservableGauge,
  createObservableUpDownCounter,
  createUpDownCounter,
  METRICS,
  SCOPES,
} from '@woodstream/observability';
import { physicalMs } from '@woodstream/streaming';
import type { WalManager } from './wal-manager.js';

/**
 * Running totals of one pchannel on this node. Hot paths bump plain numbers; the observable
 * counters report them when metrics are collected, so a message costs no SDK call.
 */
export interface ChannelCounters {
  /** `{ pchannel }`, built once and shared by every synchronous instrument call. */
  readonly attrs: Attributes;
  producedOk: number;
  producedBytes: number;
  /** Re-sends answered from the dedup memory (also counted in producedOk). */
  deduplicated: number;
  /** Messages received on produce streams and not answered yet. */
  produceInflight: number;
  /** Failed produces by error code. */
  readonly produceErrors: Map<string, number>;
  consumed: number;
  consumedBytes: number;
  /** Open producer and consumer streams of the pchannel on this node (for CollectStatus). */
  producers: number;
  consumers: number;
}

/**
 * The node's instruments (names in the METRICS table) and tracer. Create it after the process
 * registered its telemetry: meters obtained before that stay no-ops. `close()` detaches the
 * observable callbacks.
 */
export class NodeTelemetry {
  readonly tracer: Tracer;
  readonly produceDuration: Histogram;
  readonly producersConnected: UpDownCounter;
  readonly consumersConnected: UpDownCounter;
  /** Streams refused because the node had its limit of open streams. */
  readonly streamsRefused: Counter;
  // One entry per pchannel ever served here; bounded by the cluster's pchannel count.
  private readonly channels = new Map<string, ChannelCounters>();
  /** The node-wide limits' current use, set by the handler service that owns them. */
  private limits: (() => { inflightBytes: number; openStreams: number }) | undefined;
  private readonly meter: Meter;
  private readonly observables: Observable[];
  private readonly callback: BatchObservableCallback;

  constructor(manager: WalManager) {
    this.meter = metrics.getMeter(SCOPES.node);
    this.tracer = trace.getTracer(SCOPES.node);
    this.produceDuration = createHistogram(this.meter, METRICS.produceDuration);
    this.producersConnected = createUpDownCounter(this.meter, METRICS.producersConnected);
    this.consumersConnected = createUpDownCounter(this.meter, METRICS.consumersConnected);
    const produceMessages = createObservableCounter(this.meter, METRICS.produceMessages);
    const produceBytes = createObservableCounter(this.meter, METRICS.produceBytes);
    const produceDeduplicated = createObservableCounter(this.meter, METRICS.produceDeduplicated);
    const produceInflight = createObservableUpDownCounter(this.meter, METRICS.produceInflight);
    const consumeMessages = createObservableCounter(this.meter, METRICS.consumeMessages);
    const consumeBytes = createObservableCounter(this.meter, METRICS.consumeBytes);
    const timeTickLag = createObservableGauge(this.meter, METRICS.timeTickLag);
    const walChannels = createObservableGauge(this.meter, METRICS.walChannels);
    const inflightBytes = createObservableGauge(this.meter, METRICS.nodeProduceInflightBytes);
    const streamsOpen = createObservableGauge(this.meter, METRICS.nodeStreamsOpen);
    this.streamsRefused = createCounter(this.meter, METRICS.nodeStreamsRefused);
    this.observables = [
      produceMessages,
      produceBytes,
      produceInflight,
      produceDeduplicated,
      consumeMessages,
      consumeBytes,
      timeTickLag,
      walChannels,
      inflightBytes,
      streamsOpen,
    ];
    this.callback = (result) => {
      for (const [pchannel, c] of this.channels) {
        result.observe(produceMessages, c.producedOk, { pchannel, outcome: 'ok' });
        for (const [outcome, n] of c.produceErrors)
          result.observe(produceMessages, n, { pchannel, outcome });
        result.observe(produceBytes, c.producedBytes, c.attrs);
        result.observe(produceDeduplicated, c.deduplicated, c.attrs);
        result.observe(produceInflight, c.produceInflight, c.attrs);
        result.observe(consumeMessages, c.consumed, c.attrs);
        result.observe(consumeBytes, c.consumedBytes, c.attrs);
      }
      const now = Date.now();
      for (const wal of manager.openChannels()) {
        result.observe(timeTickLag, Math.max(0, now - physicalMs(wal.safeTick.timeTick)), {
          pchannel: wal.name,
        });
      }
      for (const [state, n] of Object.entries(manager.channelStates()))
        result.observe(walChannels, n, { state });
      const use = this.limits?.();
      if (use !== undefined) {
        result.observe(inflightBytes, use.inflightBytes);
        result.observe(streamsOpen, use.openStreams);
      }
    };
    this.meter.addBatchObservableCallback(this.callback, this.observables);
  }

  /** Observes the node-wide limits' use from `read` (the handler service owns the limits). */
  observeLimits(read: () => { inflightBytes: number; openStreams: number }): void {
    this.limits = read;
  }

  /** The totals of `pchannel` (created on first use). */
  channel(pchannel: string): ChannelCounters {
    let c = this.channels.get(pchannel);
    if (c === undefined) {
      c = {
        attrs: { pchannel },
        producedOk: 0,
        producedBytes: 0,
        deduplicated: 0,
        produceInflight: 0,
        produceErrors: new Map(),
        consumed: 0,
        consumedBytes: 0,
        producers: 0,
        consumers: 0,
      };
      this.channels.set(pchannel, c);
    }
    return c;
  }

  close(): void {
    this.meter.removeBatchObservableCallback(this.callback, this.observables);
  }
}
