export * from './address.js';
export * from './duration.js';
export * from './load.js';
export * from './schema.js';
export * from './secret.js';
export * from './provenance.js';
export * from './bus-login.js';
export * from './service-tls.js';
