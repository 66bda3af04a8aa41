import { traceLogFields } from '@woodstream/observability';
import { pino, type Logger as PinoLogger } from 'pino';

/** The logging interface components take; constant messages, data in fields. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  child(bindings: Record<string, unknown>): Logger;
}

function wrap(p: PinoLogger): Logger {
  return {
    info: (msg, fields) => p.info(fields ?? {}, msg),
    warn: (msg, fields) => p.warn(fields ?? {}, msg),
    error: (msg, fields) => p.error(fields ?? {}, msg),
    debug: (msg, fields) => p.debug(fields ?? {}, msg),
    child: (bindings) => wrap(p.child(bindings)),
  };
}

/** Structured JSON logs to stderr (stdout belongs to command output). */
export function createLogger(options: { level?: string; component: string }): Logger {
  return wrap(
    pino(
      {
        level: options.level ?? 'info',
        base: { component: options.component },
        // Records written inside a span carry its ids, so logs and traces join up.
        mixin: traceLogFields,
      },
      pino.destination(2),
    ),
  );
}
