/**
 * The rule engine (CONTRACT §2) as a library: pure, no I/O, no clock. The policy service serves
 * it over gRPC; `sluice policy explain|test` and the console run it in-process.
 */
export * from './policy.js';
export { classifyRedis, redisShape, type RedisClassification } from './redis-commands.js';
