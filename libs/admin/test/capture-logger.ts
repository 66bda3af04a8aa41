import type { HttpLogger } from '../src/route-context.js';

export interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  fields: Record<string, unknown>;
}

/** A logger that keeps what it is given, so tests can look at it (e.g. that no token leaks). */
export function captureLogger(
  records: LogRecord[] = [],
  bindings: Record<string, unknown> = {},
): HttpLogger & { records: LogRecord[] } {
  const log =
    (level: LogRecord['level']) =>
    (msg: string, fields: Record<string, unknown> = {}): void => {
      records.push({ level, msg, fields: { ...bindings, ...fields } });
    };
  return {
    records,
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (more) => captureLogger(records, { ...bindings, ...more }),
  };
}
