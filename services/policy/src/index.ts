export * from './policy.js';
export { classifyRedis, type RedisClassification } from './redis-commands.js';
export { startPolicyService, type PolicyServiceOptions, type RunningPolicyService, type ReloadResult } from './service.js';
export { requestPolicyReload, type ReloadAnswer, type ReloadOptions } from './reload-client.js';
