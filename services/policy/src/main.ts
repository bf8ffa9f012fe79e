import { requireServiceTls } from '@sluice/config';
import { runService } from '@sluice/service-runtime';
import { startPolicyService } from './service.js';

runService('policy', async ({ loaded, config, logger }) => {
  const service = await startPolicyService({ loaded, config, logger, tls: requireServiceTls(loaded, 'policy') });
  return {
    stop: () => service.stop(),
    reload: async () => {
      const result = await service.reload();
      if (!result.ok) throw new Error(result.error);
    },
  };
});
