/**
 * Reserved message property keys the streaming node writes into every WAL entry. They start
 * with `_`; producers may not set properties starting with `_`, except the trace context
 * (`_tp`, `_ts`: TRACE_PROPERTIES of @woodstream/observability), which readers receive.
 */
export const PROP = {
  /** Time tick, decimal. */
  timeTick: '_tt',
  /** vchannel name. */
  vchannel: '_vc',
  /** Term of the pchannel assignment that wrote the message, decimal. */
  term: '_wt',
  /** Message type: `data` or `tick`. */
  type: '_t',
  /** Who sent a data message, for deduplication: `<producer id, hex>:<sequence>`. */
  producer: '_ps',
} as const;

export const RESERVED_PREFIX = '_';
