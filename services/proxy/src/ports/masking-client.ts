import { credentials, type ChannelCredentials, type ChannelOptions, type ClientReadableStream } from '@grpc/grpc-js';
import { DependencyUnavailableError, SluiceErrorCode } from '@sluice/contracts';
import {
  compileMasking,
  decodeMaskingSnapshot,
  DEFAULT_MASKING_CONFIG,
  type CompiledMasking,
  type ProfileMasker,
} from '@sluice/masking-engine';
import { masking } from '@sluice/proto';
import { Backoff, type Logger } from '@sluice/service-runtime';
import type { MaskingPort } from '../ports.js';

export interface MaskingPortOptions {
  readonly logger: Logger;
  /** First reconnect delay; doubles up to `maxBackoffMs`. */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** How the channel authenticates (the deployment's mutual TLS); plain text when absent. */
  readonly credentials?: ChannelCredentials;
  /** Channel options that go with those credentials (grpcClientChannelOptions). */
  readonly channelOptions?: ChannelOptions;
}

export type MaskingClientPort = MaskingPort & {
  /** Resolves once the first profiles version has been compiled. Never rejects. */
  readonly ready: Promise<void>;
  /** True while the watch stream is open and a version is compiled. */
  readonly live: boolean;
  /** The version in use (0n before any). */
  readonly version: bigint;
  close(): void;
};

/**
 * The proxy's masking port. The masking service is the authority for profiles: this keeps its
 * WatchProfiles stream open and compiles every version it sends, so results are masked in-process
 * (no RPC per row or result). While the stream is down, `masker` throws and results are withheld
 * (fail closed); command texts are still masked with the last version, or the built-in detectors.
 */
export const createMaskingPort = (address: string, options: MaskingPortOptions): MaskingClientPort => {
  const { logger } = options;
  const initialBackoff = options.initialBackoffMs ?? 100;
  const maxBackoff = options.maxBackoffMs ?? 2_000;
  const client = new masking.MaskingServiceClient(address, options.credentials ?? credentials.createInsecure(), {
    ...options.channelOptions,
    // A half-open connection must not look live forever.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.initial_reconnect_backoff_ms': initialBackoff,
    'grpc.max_reconnect_backoff_ms': maxBackoff,
  });

  let compiled: CompiledMasking | undefined;
  let lastJson = '';
  let version = 0n;
  let streamOpen = false;
  let closed = false;
  let call: ClientReadableStream<masking.WatchProfilesResponse> | undefined;
  // Jitter keeps many proxies from reconnecting in step after a masking service restart.
  const backoff = new Backoff({ initialMs: initialBackoff, maxMs: maxBackoff, jitter: 0.25 });
  let retry: NodeJS.Timeout | undefined;
  let builtIns: CompiledMasking | undefined;
  let lastFailure: string | undefined;
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });

  const receive = (message: masking.WatchProfilesResponse): void => {
    if (message.maskingConfigJson !== lastJson) {
      try {
        const snapshot = decodeMaskingSnapshot(message.maskingConfigJson);
        compiled = compileMasking(snapshot.config, { hashKey: snapshot.hashKey });
        lastJson = message.maskingConfigJson;
      } catch (error) {
        // The service compiled it before sending, so this is a version skew: keep the last good
        // version if there is one, and fail closed if there is none.
        logger.error({ err: error, version: String(message.version) }, 'masking profiles version does not compile; keeping the previous one');
        if (!compiled) return;
      }
    }
    version = message.version;
    if (!streamOpen) logger.info({ version: String(version) }, 'masking profiles stream up');
    streamOpen = true;
    backoff.reset();
    markReady();
  };

  const lost = (from: ClientReadableStream<masking.WatchProfilesResponse>, reason: string): void => {
    if (from !== call) return;
    call = undefined;
    if (streamOpen) logger.warn({ reason }, 'masking profiles stream down: results are withheld until it is back');
    // Before the first version, say why it does not come (e.g. a TLS handshake refused: another
    // deployment's masking service on that address), once per distinct reason.
    else if (reason !== lastFailure) logger.warn({ reason }, 'masking profiles not received yet');
    lastFailure = reason;
    streamOpen = false;
    if (closed) return;
    retry = setTimeout(connect, backoff.next());
    retry.unref();
  };

  const connect = (): void => {
    retry = undefined;
    if (closed) return;
    const current = client.watchProfiles({});
    call = current;
    current.on('data', (message: masking.WatchProfilesResponse) => {
      if (current === call) receive(message);
    });
    current.on('error', (error: Error) => lost(current, error.message));
    current.on('end', () => lost(current, 'stream ended'));
  };

  const unavailable = (message: string): DependencyUnavailableError => new DependencyUnavailableError(SluiceErrorCode.MaskingUnavailable, message);

  connect();

  return {
    ready,
    get live() {
      return streamOpen && compiled !== undefined;
    },
    get version() {
      return version;
    },

    masker(profile: string | undefined): ProfileMasker | undefined {
      if (profile === undefined) return undefined;
      if (!streamOpen || !compiled) throw unavailable('masking profiles are not current (masking service unreachable)');
      const masker = compiled.profile(profile);
      if (!masker) throw unavailable(`masking profile "${profile}" is not known to the masking service`);
      return masker;
    },

    maskCommandText(text: string, profile: string | undefined): string {
      // Command texts go to the audit log even while the service is down: the last version, or
      // the built-in detectors, never the raw text. The profile's own strategies apply first,
      // then every detector catches what the profile does not cover.
      const source = compiled ?? (builtIns ??= compileMasking(DEFAULT_MASKING_CONFIG, {}));
      const profiled = profile === undefined ? undefined : source.profile(profile);
      const first = profiled ? profiled.maskText(text, {}) : text;
      return source.everything.maskText(first, {});
    },

    close(): void {
      closed = true;
      if (retry) clearTimeout(retry);
      const current = call;
      call = undefined;
      streamOpen = false;
      current?.cancel();
      client.close();
    },
  };
};
