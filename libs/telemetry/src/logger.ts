import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** One JSON line per event on stdout; level from LOG_LEVEL (default info). Never log secrets or raw data. */
export const createLogger = (service: string): Logger =>
  pino({
    name: `sluice-${service}`,
    level: process.env.LOG_LEVEL ?? 'info',
    base: { service, pid: process.pid },
    redact: { paths: ['token', '*.token', 'password', '*.password', 'authorization', '*.authorization'], censor: '[secret]' },
  });
