/** The logging port (same shape as the runtime's Logger, which satisfies it). */
export interface HttpLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  child(bindings: Record<string, unknown>): HttpLogger;
}

/** Settings the route plugins share. */
export interface RouteContext {
  logger: HttpLogger;
  requestTimeoutMs: number;
  /** Aborted when the app closes: in-flight admin calls end instead of holding the close. */
  closing: AbortSignal;
}
