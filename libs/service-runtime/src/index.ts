export * from './run-service.js';
export { createLogger, type Logger } from '@sluice/telemetry';
export * from './grpc-server.js';
export * from './grpc-tls.js';
export * from './health-endpoint.js';
export * from './grpc-status.js';
export * from './backoff.js';
export * from './api-server.js';
