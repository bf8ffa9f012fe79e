import { runService } from '@sluice/service-runtime';
import { startConsoleService } from './server.js';

runService('console', async ({ loaded, logger }) => {
  const service = await startConsoleService({ loaded, logger });
  return { stop: () => service.stop() };
});
