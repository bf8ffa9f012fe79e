import { runService } from '@sluice/service-runtime';
import { startAuditService } from './server.js';

runService('audit', async ({ loaded, logger }) => {
  const service = await startAuditService({ loaded, logger });
  return { stop: () => service.stop() };
});
