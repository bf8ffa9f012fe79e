import { trace } from '@opentelemetry/api';
import { createServer, type Server, type Socket } from 'node:net';
import { eventStreamConfig, parseAddress, readSecret, requireServiceTls, resolveBusLogin, resolveProvenanceKeys, resourceLimits, type ResourceConfig, type SecretRef } from '@sluice/config';
import { SluiceErrorCode } from '@sluice/contracts';
import { connectBus, createMessageSigner, ensureEventStream, eventRoom, EventPublisher, timeOrderedId } from '@sluice/event-bus';
import { createTokenVerifier } from '@sluice/identity';
import { grpcClientChannelOptions, grpcClientCredentials, runService } from '@sluice/service-runtime';
import { createAuditPort } from './audit-port.js';
import { ConnectionLimiter, listenerFullReply } from './connection-limits.js';
import { startProxyLease, type ProxyLease } from './lease.js';
import { checkRecordingFits } from './recording.js';
import { createHttpAdapter } from './http/adapter.js';
import type { GovernancePorts, ProtocolAdapter } from './ports.js';
import { createApprovalPort } from './ports/approval-client.js';
import { createMaskingPort } from './ports/masking-client.js';
import { createPolicyPort } from './ports/policy-client.js';
import { createPostgresAdapter } from './postgres/adapter.js';
import { createRedisAdapter } from './redis/adapter.js';

const adapterFor = (resource: ResourceConfig, secretsDir: string): ProtocolAdapter & { close?(): Promise<void> } => {
  switch (resource.type) {
    case 'postgres':
      return createPostgresAdapter(resource, { secretsDir });
    case 'redis':
      return createRedisAdapter(resource, { secretsDir });
    case 'http':
      return createHttpAdapter(resource, { secretsDir });
  }
};

const credentialRefs = (resource: ResourceConfig): Array<[string, SecretRef]> => {
  switch (resource.type) {
    case 'postgres':
    case 'redis':
      return resource.credentials.password ? [['password', resource.credentials.password]] : [];
    case 'http':
      return Object.entries(resource.credentials.headers).map(([name, ref]) => [`headers.${name}`, ref]);
  }
};

runService('proxy', async ({ loaded, config, logger }) => {
  // Before anything else: without this deployment's certificates the proxy would have to trust
  // whatever answers on the services' ports.
  const tls = requireServiceTls(loaded, 'proxy');
  // Credentials are read at each login, so a secret set later works without a restart; an unset
  // one is said once here and the target is reached without it (it answers for itself).
  config.resources.forEach((resource, index) => {
    for (const [key, ref] of credentialRefs(resource)) {
      if (readSecret(ref, loaded.dir) === undefined) {
        logger.warn({ key: `resources[${index}].credentials.${key}`, ref }, 'target credential secret is not set; connecting without it');
      }
    }
  });
  const nc = await connectBus(config.bus.url, 'proxy', resolveBusLogin(loaded, 'proxy'));
  const { privateKeyPem } = resolveProvenanceKeys(loaded, 'proxy');
  // Before anything listens: limits that cannot fit the bus are a config error, not a wedge later.
  checkRecordingFits(config.audit.recording, eventRoom(nc.info?.max_payload ?? 1024 * 1024, privateKeyPem !== undefined));
  await ensureEventStream(nc, eventStreamConfig(config));
  if (privateKeyPem === undefined) logger.warn({}, 'no provenance key for proxy: its events go unsigned and the audit store refuses them');
  const publisher = new EventPublisher(nc, {
    ...(privateKeyPem === undefined ? {} : { signer: createMessageSigner('proxy', privateKeyPem) }),
    source: 'proxy',
    subjectPrefix: config.bus.subjectPrefix,
    maxEventBytes: config.audit.recording.maxEventBytes,
    onError: (error, retrying) =>
      retrying
        ? logger.warn({ err: error }, 'event publish failed; retrying (commands are refused meanwhile)')
        : logger.warn({ err: error }, 'the bus refused an event; publishing it reduced'),
    onReduced: (event, reduction, dropped) =>
      (dropped ? logger.error.bind(logger) : logger.warn.bind(logger))(
        { id: event.id, type: event.type, session: event.subject, ...reduction },
        dropped ? 'the bus refused an event even reduced; dropped' : 'event published in reduced form',
      ),
  });
  const auditPort = createAuditPort(publisher, { source: 'sluice/proxy', recording: config.audit.recording });
  // A lease on the bus, so that another proxy records this one's sessions as ended if it dies.
  // Without one (the bus user may not make the lease stream) sessions are still recorded; only
  // a SIGKILLed proxy's sessions then stay open in the record.
  const streamSettings = eventStreamConfig(config);
  const lease: ProxyLease | undefined = await startProxyLease(nc, publisher, logger, {
    stream: streamSettings.stream,
    subjectPrefix: streamSettings.subjectPrefix,
    replicas: streamSettings.replicas,
  }).catch((error: unknown) => {
    logger.error({ err: error }, 'no proxy lease: if this proxy is killed, its open sessions stay open in the record');
    return undefined;
  });
  const channel = (peer: 'policy' | 'masking' | 'approval') => ({ credentials: grpcClientCredentials(tls, peer), channelOptions: grpcClientChannelOptions(tls, peer) });
  const policy = createPolicyPort(config.services.policy.grpc, { logger, ...channel('policy') });
  const tracer = trace.getTracer('sluice-proxy');
  const masking = createMaskingPort(config.services.masking.grpc, { logger, ...channel('masking') });
  const approvals = createApprovalPort(config.services.approval.grpc, { logger, ...channel('approval') });
  const verifier = createTokenVerifier(config.identity.oidc);
  const connectionLimits = new Map(config.resources.map((resource) => [resource.name, new ConnectionLimiter(resourceLimits(resource))]));
  const ports: GovernancePorts = {
    identity: { verify: async (token) => verifier.verify(token) },
    policy: {
      describeSession: (subject, resource) => policy.describeSession(subject, resource),
      // One span per decision asked for; an uncached decision's gRPC call to the policy service
      // joins it, so a command is one trace across proxy and policy (a no-op unless tracing is on).
      // A decision the cache answers at once (cachedDecision) has no span: it costs no call.
      cachedDecision: (subject, resource, command) => policy.cachedDecision(subject, resource, command),
      decide: (subject, resource, command) =>
        tracer.startActiveSpan('sluice.decide', { attributes: { 'sluice.resource': resource, 'sluice.protocol': command.kind } }, (span) =>
          policy.decide(subject, resource, command).finally(() => span.end()),
        ),
    },
    masking,
    approvals,
    audit: lease ? lease.wrap(auditPort) : auditPort,
    recording: config.audit.recording,
    connectionLimits,
    newId: timeOrderedId,
    now: () => new Date(),
  };

  const sockets = new Set<Socket>();
  const listeners: Array<{ server: Server; adapter: ProtocolAdapter & { close?(): Promise<void> } }> = [];
  for (const resource of config.resources) {
    const adapter = adapterFor(resource, loaded.dir);
    const limiter = connectionLimits.get(resource.name)!;
    const server = createServer({ noDelay: true }, (socket) => {
      if (!limiter.tryOpen()) {
        // Refused before a byte is read, in the protocol's own form; audited like any refusal.
        ports.audit.record(timeOrderedId(), 'session.rejected', {
          resource: resource.name,
          protocol: resource.type,
          client: `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? 0}`,
          reason: `too many connections (limits.maxConnections ${limiter.limits.maxConnections})`,
          code: SluiceErrorCode.TooManyConnections,
        });
        socket.on('error', () => socket.destroy());
        socket.end(listenerFullReply(resource.type, limiter.limits.maxConnections));
        setTimeout(() => socket.destroy(), 1_000).unref();
        return;
      }
      socket.once('close', () => limiter.release());
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      adapter.handleConnection(socket, ports).catch((error: unknown) => {
        logger.error({ err: error, resource: resource.name }, 'connection handler failed');
        socket.destroy();
      });
    });
    const address = parseAddress(resource.listen)!;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address.port, address.host, () => resolve());
    });
    logger.info({ resource: resource.name, type: resource.type, listen: resource.listen }, 'listening');
    listeners.push({ server, adapter });
  }
  // Ready only once the first policy version and masking profiles arrived from this deployment's
  // own services: a proxy that cannot get them (down, or another deployment's, refused at the TLS
  // handshake) never reports ready. Its listeners are up meanwhile and fail closed.
  const waiting = { policy: true, masking: true };
  void policy.ready.then(() => (waiting.policy = false));
  void masking.ready.then(() => (waiting.masking = false));
  const reminder = setInterval(() => {
    const missing = Object.entries(waiting).filter(([, still]) => still).map(([name]) => name);
    logger.warn({ waitingFor: missing }, `not ready: no answer yet from this deployment's ${missing.join(' and ')} service (down, or refused at the TLS handshake)`);
  }, 10_000);
  await Promise.all([policy.ready, masking.ready]).finally(() => clearInterval(reminder));

  return {
    async stop() {
      for (const { server } of listeners) server.close();
      // In-flight sessions get a moment to finish; then they are closed (and audited as ended).
      const deadline = Date.now() + 3_000;
      while (sockets.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      for (const socket of sockets) socket.destroy();
      for (const { adapter } of listeners) await adapter.close?.();
      await new Promise((resolve) => setTimeout(resolve, 50));
      // Decisions still waiting for their outcome go out before the publisher's last flush.
      auditPort.flush();
      await lease?.stop();
      await publisher.close();
      policy.close();
      masking.close();
      approvals.close();
      await nc.drain();
    },
  };
});
