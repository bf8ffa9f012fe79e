import { defineConfig } from 'vitest/config';

const resolve = { conditions: ['development'] };
const env = { OTEL_TRACES_EXPORTER: 'none', OTEL_SDK_DISABLED: 'true', LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent' };

export default defineConfig({
  test: {
    projects: [
      {
        resolve,
        test: {
          name: 'unit',
          include: ['libs/*/src/**/*.spec.ts', 'services/*/src/**/*.spec.ts', 'cli/src/**/*.spec.ts'],
          env,
          testTimeout: 20_000,
        },
      },
      {
        resolve,
        test: {
          name: 'integration',
          include: ['test/**/*.spec.ts'],
          env,
          // These share one PostgreSQL, NATS and Redis and start Sluice processes: one file at a time.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 90_000,
        },
      },
    ],
  },
});
