import { runService } from '@sluice/service-runtime';
import { startApprovalService } from './server.js';

runService('approval', async ({ loaded, logger }) => {
  const service = await startApprovalService({ loaded, logger });
  return { stop: () => service.stop() };
});
