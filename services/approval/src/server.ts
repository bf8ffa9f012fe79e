import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server as GrpcServer } from '@grpc/grpc-js';
import { eventStreamConfig, formatAddress, parseAddress, readSecret, resolveBusLogin, resolveProvenanceKeys, type LoadedConfig, type ServiceTls } from '@sluice/config';
import { connectBus, createMessageSigner, createProvenanceVerifier, ensureEventStream, EventPublisher, type NatsConnection } from '@sluice/event-bus';
import { createTokenVerifier, type TokenVerifier } from '@sluice/identity';
import { approval as proto } from '@sluice/proto';
import { createApiServer, grpcServerAuthorization, grpcServerCredentials, readApiTls, shutdownGrpcServer, type Logger } from '@sluice/service-runtime';
import type { KnownApproval } from './approval.js';
import { createGrpcHandlers } from './grpc.js';
import { createHttpApi } from './http.js';
import { followApprovalEvents, type ApprovalFollower } from './nats.js';
import { SlackNotifier } from './slack.js';
import { WebhookNotifier } from './webhooks.js';
import { ApprovalWorkflow, fromCloudEvent } from './workflow.js';

export interface ApprovalServiceOptions {
  readonly loaded: LoadedConfig;
  readonly logger: Logger;
  /** Verifies approvers' tokens; by default the configured OIDC issuers. */
  readonly identity?: TokenVerifier;
  readonly now?: () => Date;
  /** Retries of each webhook delivery (default 5). */
  readonly webhookAttempts?: number;
  /** How long one AwaitDecision call waits before answering "not yet" (default 20 s). */
  readonly longPollMs?: number;
  /**
   * This deployment's gRPC TLS material (mutual TLS: clients must hold a certificate of its CA).
   * The service process always passes it; absent, gRPC is plain text (embedded in a test).
   */
  readonly tls?: ServiceTls;
}

export interface RunningApprovalService {
  /** `host:port` actually bound (port 0 in the config picks one). */
  readonly grpcAddress: string;
  readonly httpAddress: string;
  readonly workflow: ApprovalWorkflow;
  stop(): Promise<void>;
}

const listenHttp = (server: HttpServer, address: string): Promise<string> => {
  const { host, port } = parseAddress(address)!;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const bound = server.address() as AddressInfo;
      resolve(formatAddress({ host, port: bound.port }));
    });
  });
};

const listenGrpc = (server: GrpcServer, address: string, tls: ServiceTls | undefined): Promise<string> => {
  const { host } = parseAddress(address)!;
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpcServerCredentials(tls), (error, port) => {
      if (error) reject(error);
      else resolve(formatAddress({ host, port }));
    });
  });
};

/**
 * Starts the approval service: replays every stored approval event first (so a restart loses no
 * request or decision), then serves gRPC for the proxy and HTTP for approvers and Slack.
 */
export const startApprovalService = async (options: ApprovalServiceOptions): Promise<RunningApprovalService> => {
  const { loaded, logger } = options;
  const { config } = loaded;
  const settings = config.services.approval;
  const now = options.now ?? (() => new Date());
  // Read before anything connects: a bad certificate is a config error, never a plain-HTTP fallback.
  const httpTls = readApiTls(settings.tls, loaded.dir, 'services.approval.tls');

  const nc: NatsConnection = await connectBus(config.bus.url, 'approval', resolveBusLogin(loaded, 'approval'));
  const closeBus = async (): Promise<void> => {
    await nc.drain().catch(() => nc.close());
  };
  try {
    await ensureEventStream(nc, eventStreamConfig(config));
  } catch (error) {
    await closeBus();
    throw error;
  }
  const provenance = resolveProvenanceKeys(loaded, 'approval');
  if (provenance.privateKeyPem === undefined) logger.warn({}, 'no provenance key for approval: its events go unsigned and the audit store refuses them');
  const publisher = new EventPublisher(nc, {
    ...(provenance.privateKeyPem === undefined ? {} : { signer: createMessageSigner('approval', provenance.privateKeyPem) }),
    source: 'approval',
    subjectPrefix: config.bus.subjectPrefix,
    onError: (error) => logger.warn({ err: error }, 'event publish failed'),
  });

  const webhooks = new WebhookNotifier(
    config.approval.webhooks.map((hook, index) => {
      const secret = readSecret(hook.secret, loaded.dir);
      if (hook.secret && secret === undefined) logger.warn({ webhook: index }, 'webhook secret is not set; deliveries go unsigned');
      return { url: hook.url, secret };
    }),
    logger,
    options.webhookAttempts === undefined ? {} : { attempts: options.webhookAttempts },
  );

  let slack: { notifier: SlackNotifier; signingSecret: string | undefined; users: Record<string, { sub: string; groups: string[] }> } | undefined;
  let slackPosts = false;
  if (config.approval.slack) {
    const token = readSecret(config.approval.slack.botToken, loaded.dir);
    const signingSecret = readSecret(config.approval.slack.signingSecret, loaded.dir);
    if (token === undefined) logger.warn('slack bot token is not set; approval requests are not posted to Slack');
    if (signingSecret === undefined) logger.warn('slack signing secret is not set; Slack interactions are refused');
    slackPosts = token !== undefined;
    slack = {
      notifier: new SlackNotifier({ token: token ?? '', channel: config.approval.slack.channel, apiUrl: config.approval.slack.apiUrl }, logger),
      signingSecret,
      users: config.approval.slack.users,
    };
  }

  let decisionBase = settings.publicUrl?.replace(/\/$/, '');
  const onRequested = (approval: KnownApproval): void => {
    const decisionUrl = `${decisionBase}/v1/approvals/${encodeURIComponent(approval.id)}/decision`;
    webhooks.notify(approval, decisionUrl);
    if (slackPosts) slack?.notifier.notify(approval);
  };
  // With provenance keys, only what this service itself signed rebuilds approvals: a decision
  // someone else put on the bus must never release a command. Without keys there is nothing to check.
  const approvalKey = provenance.publicKeysPem.approval;
  // Every instance folds the approval events as the stream delivers them, its own too: any
  // instance may decide a request held on any proxy, and each sees the same state. Unsigned,
  // decisions from the stream are not trusted, so each instance folds only its own (one instance).
  const workflow = new ApprovalWorkflow(publisher, logger, { onRequested, onSettled: (approval) => slack?.notifier.updateOutcome(approval) }, now, {
    followsStream: approvalKey !== undefined,
  });

  let follower: ApprovalFollower;
  try {
    if (approvalKey === undefined) {
      logger.warn({}, 'no provenance key for approval: approvals are rebuilt from the stream unverified, without their decisions (they must be decided again)');
    }
    const replaySettings = {
      stream: config.bus.stream,
      subjectPrefix: config.bus.subjectPrefix,
      ...(approvalKey === undefined
        ? {}
        : {
            provenance: createProvenanceVerifier({ approval: approvalKey }),
            onRefused: (reason: string, seq: number) => logger.error({ seq, reason }, 'approval event on the stream is not genuine; ignored'),
          }),
    };
    let unverifiedDecisions = 0;
    follower = await followApprovalEvents(nc, replaySettings, (event) => {
      const approvalEvent = fromCloudEvent(event);
      if (!approvalEvent) return;
      // Unsigned, anyone who can publish on the bus could have written a decision: fail closed.
      // What else an impostor could add (a request, an expiry) releases nothing.
      if (approvalKey === undefined && approvalEvent.type === 'approval.decided') {
        unverifiedDecisions += 1;
        return;
      }
      workflow.observe(approvalEvent, event.id);
    });
    if (unverifiedDecisions > 0) logger.warn({ decisions: unverifiedDecisions }, 'unverifiable approval decisions on the stream were not replayed');
  } catch (error) {
    await closeBus();
    throw error;
  }
  workflow.armTimers();
  logger.info({ messages: follower.replayed, pending: workflow.list('pending').length }, 'approvals rebuilt from the event stream');

  const verifier = options.identity ?? createTokenVerifier(config.identity.oidc);
  const httpServer = createApiServer(httpTls, createHttpApi({ workflow, verifier, logger, now, ...(slack ? { slack } : {}) }));
  // Only proxies request, await and consume approvals over gRPC (approvers use HTTP).
  const grpcServer = new GrpcServer(grpcServerAuthorization(options.tls, () => ['proxy']));
  grpcServer.addService(
    proto.ApprovalServiceService,
    createGrpcHandlers({
      workflow,
      logger,
      defaultTimeoutMs: settings.timeout,
      now,
      ...(options.longPollMs === undefined ? {} : { longPollMs: options.longPollMs }),
    }),
  );
  let httpAddress: string;
  let grpcAddress: string;
  try {
    httpAddress = await listenHttp(httpServer, settings.http);
    grpcAddress = await listenGrpc(grpcServer, settings.grpc, options.tls);
  } catch (error) {
    workflow.stop();
    httpServer.close();
    grpcServer.forceShutdown();
    await follower.stop();
    await closeBus();
    throw error;
  }
  decisionBase ??= `${httpTls === undefined ? 'http' : 'https'}://${httpAddress}`;
  logger.info({ grpc: grpcAddress, http: httpAddress, tls: httpTls !== undefined }, 'approval service listening');

  let stopped: Promise<void> | undefined;
  return {
    grpcAddress,
    httpAddress,
    workflow,
    stop: () =>
      (stopped ??= (async () => {
        // Stop taking decisions, release long polls (the proxy re-asks elsewhere or after a restart).
        const httpClosed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
        httpServer.closeIdleConnections();
        workflow.stop();
        await shutdownGrpcServer(grpcServer);
        httpServer.closeAllConnections();
        await httpClosed;
        await webhooks.close();
        await publisher.close();
        await follower.stop();
        await closeBus();
      })()),
  };
};
