import { requireServiceTls } from '@sluice/config';
import { runService } from '@sluice/service-runtime';
import { startMaskingService } from './server.js';

runService('masking', async ({ loaded, logger }) => startMaskingService({ loaded, logger, tls: requireServiceTls(loaded, 'masking') }));
