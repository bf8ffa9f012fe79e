export { startPolicyService, type PolicyServiceOptions, type RunningPolicyService, type ReloadResult } from './service.js';
export { requestPolicyReload, type ReloadAnswer, type ReloadOptions } from './reload-client.js';
