export { startMaskingService, type MaskingServiceOptions, type RunningMaskingService } from './server.js';
