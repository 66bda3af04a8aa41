import type { Logger } from './logger.js';

/**
 * Runs a started app until SIGTERM or SIGINT, then stops it gracefully (DRAINING → STOPPED)
 * within `shutdownGraceMs`; a second signal, or the grace period running out, exits at once.
 * Resolves with the process exit code.
 */
export function runUntilSignal(
  app: { stop(): Promise<void> },
  logger: Logger,
  options: { shutdownGraceMs?: number } = {},
): Promise<number> {
  const graceMs = options.shutdownGraceMs ?? 60_000;
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn('second signal: exiting without waiting', { signal });
        resolve(1);
        return;
      }
      stopping = true;
      logger.info('stopping', { signal, graceMs });
      const timer = setTimeout(() => {
        logger.error('graceful stop took too long; exiting', { graceMs });
        resolve(1);
      }, graceMs);
      timer.unref();
      app.stop().then(
        () => {
          clearTimeout(timer);
          logger.info('stopped');
          resolve(0);
        },
        (err: unknown) => {
          clearTimeout(timer);
          logger.error('stop failed', { err: String(err) });
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
