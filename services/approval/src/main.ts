import { requireServiceTls } from '@sluice/config';
import { runService } from '@sluice/service-runtime';
import { startApprovalService } from './server.js';

runService('approval', async ({ loaded, logger }) => {
  const service = await startApprovalService({ loaded, logger, tls: requireServiceTls(loaded, 'approval') });
  return { stop: () => service.stop() };
});
