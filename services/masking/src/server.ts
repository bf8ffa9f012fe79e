import { Server } from '@grpc/grpc-js';
import { formatAddress, loadConfig, parseAddress, type LoadedConfig, type ServiceTls } from '@sluice/config';
import { masking } from '@sluice/proto';
import { grpcServerAuthorization, grpcServerCredentials, shutdownGrpcServer, type Logger } from '@sluice/service-runtime';
import { MaskingGrpcHandlers } from './grpc.js';
import { buildVersion, generateHashKey, resolveHashKey, type ProfilesVersion } from './snapshot.js';

export interface MaskingServiceOptions {
  readonly loaded: LoadedConfig;
  readonly logger: Logger;
  /** Overrides `services.masking.grpc` (tests listen on `127.0.0.1:0`). */
  readonly listen?: string;
  /**
   * This deployment's gRPC TLS material (mutual TLS: clients must hold a certificate of its CA).
   * The service process always passes it; absent, gRPC is plain text (embedded in a test).
   */
  readonly tls?: ServiceTls;
}

export interface RunningMaskingService {
  /** The bound address, `host:port` (the real port when 0 was asked for). */
  readonly address: string;
  /** The version being served. */
  readonly version: bigint;
  /** Re-reads the config file; a file that does not load or compile is rejected and the old profiles stay. */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the masking service: the authority for masking profiles, streamed to proxies over gRPC. */
export const startMaskingService = async ({ loaded, logger, listen, tls }: MaskingServiceOptions): Promise<RunningMaskingService> => {
  const generatedKey = generateHashKey();
  const initialKey = resolveHashKey(loaded, generatedKey);
  if (initialKey.source === 'generated') {
    logger.warn('masking.hashKey is not configured: using a random key for this run; hashed values will differ after a restart');
  }
  let current: ProfilesVersion = buildVersion(loaded, initialKey.key, 1n);
  const handlers = new MaskingGrpcHandlers(() => current);

  // Only proxies read the profiles.
  const server = new Server(grpcServerAuthorization(tls, () => ['proxy']));
  server.addService(masking.MaskingServiceService, handlers.implementation);
  const requested = listen ?? loaded.config.services.masking.grpc;
  const parsed = parseAddress(requested);
  if (!parsed) throw new Error(`cannot listen on ${requested}`);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(formatAddress(parsed), grpcServerCredentials(tls), (error, bound) => (error ? reject(error) : resolve(bound)));
  });
  const address = formatAddress({ host: parsed.host, port });
  logger.info({ address, profiles: Object.keys(loaded.config.masking.profiles) }, 'masking service listening');

  return {
    address,
    get version() {
      return current.version;
    },
    reload: async () => {
      // Throws on a bad file: the caller logs it and the served version does not change.
      const next = loadConfig(loaded.path);
      const key = resolveHashKey(next, generatedKey);
      current = buildVersion(next, key.key, current.version + 1n);
      handlers.broadcast();
      logger.info({ version: String(current.version), profiles: Object.keys(next.config.masking.profiles) }, 'masking profiles reloaded');
    },
    stop: async () => {
      handlers.endAll();
      await shutdownGrpcServer(server);
    },
  };
};
