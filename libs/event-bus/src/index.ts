export * from './connection.js';
export * from './publisher.js';
export * from './stream.js';
export * from './reduction.js';
export * from './provenance.js';
export * from './nats-permissions.js';
export * from './jetstream-errors.js';
export * from './ids.js';
