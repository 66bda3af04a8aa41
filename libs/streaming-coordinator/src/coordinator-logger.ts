/**
 * The logging port of the coordinator: constant messages, data in fields. Levels follow the
 * house style: `error` a human must act, `warn` degraded but self-healing, `info` lifecycle and
 * leadership, `debug` per operation.
 */
export interface CoordinatorLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** Drops everything; the default when no logger is injected. */
export const noopLogger: CoordinatorLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
