import { Server, type ServerWritableStream } from '@grpc/grpc-js';
import { buildEvent } from '@sluice/contracts';
import { eventStreamConfig, loadConfig, MAX_GOVERNED_MESSAGE_BYTES, resolveBusLogin, resolveProvenanceKeys, type LoadedConfig, type ServiceTls, type SluiceConfig } from '@sluice/config';
import { connectBus, createMessageSigner, createProvenanceVerifier, ensureEventStream, EventPublisher, timeOrderedId, type NatsConnection } from '@sluice/event-bus';
import { policy as pb } from '@sluice/proto';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { grpcServerAuthorization, grpcServerCredentials, shutdownGrpcServer, type Logger } from '@sluice/service-runtime';
import { followPolicyChanges } from './follow.js';
import { policyServiceHandlers, type PolicyServiceState } from './grpc.js';
import { createPolicy, type Policy } from '@sluice/policy-engine';

export interface PolicyServiceOptions {
  readonly loaded: LoadedConfig;
  readonly config: SluiceConfig;
  readonly logger: Logger;
  /** Overrides config.services.policy.grpc (tests listen on port 0). */
  readonly listen?: string;
  /**
   * This deployment's gRPC TLS material (mutual TLS: clients must hold a certificate of its CA).
   * The service process always passes it; absent, gRPC is plain text (embedded in a test).
   */
  readonly tls?: ServiceTls;
}

export type ReloadResult = { readonly ok: true; readonly version: number } | { readonly ok: false; readonly error: string; readonly version: number };

export interface RunningPolicyService {
  /** The bound gRPC address, `host:port`. */
  readonly address: string;
  readonly version: number;
  readonly policy: Policy;
  /** Re-reads the config file; a bad file leaves the old rules in force. */
  reload(): Promise<ReloadResult>;
  stop(): Promise<void>;
}

const policyOf = (config: SluiceConfig): Policy =>
  createPolicy(config.rules, config.resources, { approvalTimeoutMs: config.services.approval.timeout });

/** Starts the policy service: classifier loaded, bus connected, gRPC bound. */
export const startPolicyService = async (options: PolicyServiceOptions): Promise<RunningPolicyService> => {
  const { loaded, config, logger } = options;
  await loadSqlClassifier();
  let current = policyOf(config);
  let version = 1;

  const nc: NatsConnection = await connectBus(config.bus.url, 'policy', resolveBusLogin(loaded, 'policy'));
  await ensureEventStream(nc, eventStreamConfig(config));
  const { privateKeyPem, publicKeysPem } = resolveProvenanceKeys(loaded, 'policy');
  if (privateKeyPem === undefined) logger.warn({}, 'no provenance key for policy: its events go unsigned and the audit store refuses them');
  const publisher = new EventPublisher(nc, {
    ...(privateKeyPem === undefined ? {} : { signer: createMessageSigner('policy', privateKeyPem) }),
    source: 'policy',
    subjectPrefix: config.bus.subjectPrefix,
    onError: (error) => logger.error({ err: error }, 'event publish failed'),
  });

  const watchers = new Set<ServerWritableStream<pb.WatchPolicyRequest, pb.WatchPolicyResponse>>();
  /** The highest version a policy.changed on the stream carried. */
  let announced = 0;
  let reloading: Promise<ReloadResult> = Promise.resolve({ ok: true, version });

  const startedIdentity = JSON.stringify(config.identity);
  /** The rules in the config file now, or why they are refused (the previous rules then stay). */
  const readRules = (): Policy | string => {
    try {
      const next = loadConfig(loaded.path).config;
      // Every service verifies tokens with the issuers it started with: a reload cannot remove (or
      // add) one, and rules read as if it had would mislead whoever took an issuer out.
      if (JSON.stringify(next.identity) !== startedIdentity) {
        throw new Error('identity.oidc changed: the services verify tokens with the issuers they started with; restart them to change issuers');
      }
      return policyOf(next);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      logger.error({ error: message }, 'policy reload rejected; the previous rules stay');
      return message;
    }
  };
  const serve = (next: Policy, nextVersion: number): void => {
    current = next;
    version = nextVersion;
    logger.info({ version, rules: next.rules }, 'policy reloaded');
    for (const watcher of watchers) watcher.write({ policyVersion: BigInt(version) });
  };

  const reloadNow = async (): Promise<ReloadResult> => {
    const next = readRules();
    if (typeof next === 'string') return { ok: false, error: next, version };
    // Above any version another instance announced, so every instance can tell which is newer.
    serve(next, Math.max(version, announced) + 1);
    try {
      await publisher.publishNow(
        buildEvent('policy.changed', { id: timeOrderedId(), source: 'sluice/policy', subject: 'policy', time: new Date(), data: { version, rules: next.rules } }),
      );
    } catch (error) {
      logger.error({ err: error }, 'policy.changed could not be published');
    }
    return { ok: true, version };
  };

  /** Another instance reloaded: read the same file and serve it under the version it announced. */
  const adopt = async (announcedVersion: number): Promise<void> => {
    if (announcedVersion <= version) return;
    const next = readRules();
    if (typeof next !== 'string') serve(next, announcedVersion);
  };
  const policyKey = publicKeysPem.policy;
  const changes = await followPolicyChanges(
    nc,
    { stream: config.bus.stream, subjectPrefix: config.bus.subjectPrefix, ...(policyKey === undefined ? {} : { provenance: createProvenanceVerifier({ policy: policyKey }) }) },
    (changed) => {
      announced = Math.max(announced, changed);
      const adoptChanged = (): Promise<ReloadResult> => adopt(changed).then(() => ({ ok: true, version }) as const);
      reloading = reloading.then(adoptChanged, adoptChanged);
    },
    (reason) => logger.error({ reason }, 'policy.changed on the stream is not genuine; ignored'),
  );

  const state: PolicyServiceState = {
    logger,
    get policy() {
      return current;
    },
    get version() {
      return version;
    },
    reload: async () => {
      // One reload at a time, in order: each reads the file as it is when its turn comes.
      reloading = reloading.then(reloadNow, reloadNow);
      const result = await reloading;
      return result.ok ? { ok: true } : { ok: false, error: result.error };
    },
    watch(stream) {
      watchers.add(stream);
      const forget = (): void => {
        watchers.delete(stream);
      };
      stream.on('cancelled', forget);
      stream.on('close', forget);
      stream.on('error', forget);
      stream.write({ policyVersion: BigInt(version) });
    },
  };

  // A command is decided whole: a Redis command or SQL text up to the listeners' `limits`
  // (at most MAX_GOVERNED_MESSAGE_BYTES), not gRPC's default 4 MiB, else a large value is refused.
  // Proxies ask for decisions; only the operator (`sluice policy reload`) may reload.
  const server = new Server({
    'grpc.max_receive_message_length': MAX_GOVERNED_MESSAGE_BYTES + 1024 * 1024,
    ...grpcServerAuthorization(options.tls, (method) => (method.endsWith('/Reload') ? ['operator'] : ['proxy'])),
  });
  server.addService(pb.PolicyServiceService, policyServiceHandlers(state));
  const listen = options.listen ?? config.services.policy.grpc;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, grpcServerCredentials(options.tls), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  const host = listen.slice(0, listen.lastIndexOf(':'));
  const address = `${host}:${port}`;
  logger.info({ address, rules: current.rules }, 'policy service listening');

  return {
    address,
    get version() {
      return version;
    },
    get policy() {
      return current;
    },
    reload: () => {
      reloading = reloading.then(reloadNow, reloadNow);
      return reloading;
    },
    async stop() {
      // Ending the watch streams tells every proxy to drop its cached decisions.
      for (const watcher of watchers) watcher.end();
      watchers.clear();
      await shutdownGrpcServer(server);
      await changes.stop();
      await publisher.close(2_000);
      await nc.drain();
    },
  };
};
