export * from './approval.js';
export { startApprovalService, type ApprovalServiceOptions, type RunningApprovalService } from './server.js';
export { approvalView } from './http.js';
export { signBody, webhookPayload } from './webhooks.js';
export { slackSignature, verifySlackRequest } from './slack.js';
export { ApprovalWorkflow, ApprovalNotFoundError, type EventSink } from './workflow.js';
