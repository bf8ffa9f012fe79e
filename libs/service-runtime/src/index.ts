export * from './run-service.js';
export { createLogger, type Logger } from '@sluice/telemetry';
