export * from './errors.js';
export * from './events.js';
export * from './policy.js';
export * from './subjects.js';
export * from './http-path.js';
export * from './redis-sort.js';
export * from './provenance.js';
export * from './approvers.js';
