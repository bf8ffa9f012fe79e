import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildEvent, type CloudEvent } from '@sluice/contracts';
import { parseConfig, resolveBusLogin, type LoadedConfig } from '@sluice/config';
import {
  BUS_ROLES,
  connectBus,
  createMessageSigner,
  ensureEventStream,
  EventPublisher,
  generateSigningKeyPair,
  natsAuthorizationConfig,
  auditDurableNames,
  type BusRole,
  type MessageSigner,
  type NatsConnection,
} from '@sluice/event-bus';
import { startAuditService, type AuditService } from '@sluice/audit';
import { startApprovalService } from '@sluice/approval';
import { run as auditCli } from '../cli/src/commands/audit.js';
import { freePort } from './support/ports.js';
import { startSecuredNats, type SecuredNats } from './support/nats-server.js';
import { writeSigningKeys } from './support/signing-keys.js';
import { waitUntil } from './support/wait.js';

const RUN = randomUUID().slice(0, 8);
const STREAM = `SECURED_${RUN}`;
const PREFIX = `secured.${RUN}.events`;
const DATABASE = `sluice_nats_sec_${RUN.replaceAll('-', '')}`;
const DB_URL = `postgres://postgres@127.0.0.1:5432/${DATABASE}`;
const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });

const decided = (session: string, index: number): CloudEvent =>
  buildEvent('command.decided', {
    id: `${session}-${index}`,
    source: 'sluice/proxy',
    subject: session,
    time: new Date(),
    data: { commandId: `${session}-c${index}`, resource: 'shop-db', protocol: 'postgres', command: 'SELECT 1', action: 'read', risk: 'low', decision: 'allow', rule: 'r', reason: 'ok' },
  });

/** The approval service's request for approval `id` of a risky DELETE, needing `minApprovals` of the dba group. */
const approvalRequested = (id: string, minApprovals: number) =>
  buildEvent('approval.requested', {
    id: `${id}-requested`,
    source: 'sluice/approval',
    subject: `session-${id}`,
    time: new Date(),
    data: {
      approvalId: id,
      commandId: `c-${id}`,
      resource: 'shop-db',
      subject: { sub: 'ops-agent', groups: ['ops'] },
      command: 'DELETE FROM orders',
      commandHash: `hash-${id}`,
      risk: 'high',
      rule: 'risky',
      expiresAt: new Date(Date.now() + 600_000).toISOString(),
      approvers: { groups: ['dba'], subs: [], minApprovals },
    },
  });

describe('the bus with NATS users, subject permissions and signed events (real nats-server 2.9)', () => {
  let nats: SecuredNats;
  let dir: string;
  let loaded: LoadedConfig;
  let audit: AuditService | undefined;
  const seeds = {} as Record<BusRole, string>;
  let proxySigner: MessageSigner;
  let approvalSigner: MessageSigner;
  const connections: NatsConnection[] = [];
  const connectAs = async (role: BusRole): Promise<NatsConnection> => {
    const nc = await connectBus(nats.url, role, { credential: { nkeySeed: seeds[role] } });
    connections.push(nc);
    return nc;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-nats-sec-'));
    const users = BUS_ROLES.map((role) => {
      const pair = createUser();
      seeds[role] = new TextDecoder().decode(pair.getSeed());
      writeFileSync(join(dir, `${role}.nk`), `${seeds[role]}\n`, { mode: 0o600 });
      return { role, nkey: pair.getPublicKey() };
    });
    nats = await startSecuredNats(natsAuthorizationConfig(users, STREAM, PREFIX, auditDurableNames([{ name: 'splunk' }])));
    const { signers, privateKeys } = writeSigningKeys(dir);
    proxySigner = createMessageSigner('proxy', privateKeys.proxy!);
    approvalSigner = createMessageSigner('approval', privateKeys.approval!);
    const document = {
      bus: {
        url: nats.url,
        stream: STREAM,
        subjectPrefix: PREFIX,
        credentials: Object.fromEntries(['proxy', 'approval', 'policy', 'audit'].map((role) => [role, { nkey: { file: `${role}.nk` } }])),
      },
      eventStore: { url: DB_URL },
      services: {
        audit: { http: `127.0.0.1:${await freePort()}` },
        approval: { grpc: `127.0.0.1:${await freePort()}`, http: `127.0.0.1:${await freePort()}` },
      },
      provenance: { signers },
    };
    writeFileSync(join(dir, 'sluice.yaml'), JSON.stringify(document));
    const config = parseConfig(document);
    loaded = { config: { ...config, bus: { ...config.bus, url: nats.url }, eventStore: { url: DB_URL } }, path: join(dir, 'sluice.yaml'), dir };
    audit = await startAuditService({ loaded, logger });
  });

  afterAll(async () => {
    await audit?.stop();
    for (const nc of connections) await nc.close().catch(() => undefined);
    await nats?.stop();
    const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a client without credentials, or with an unknown key', async () => {
    await expect(connect({ servers: nats.url, reconnect: false, timeout: 3_000 })).rejects.toThrow(/authorization/i);
    const stranger = new TextDecoder().decode(createUser().getSeed());
    await expect(connectBus(nats.url, 'stranger', { credential: { nkeySeed: stranger } }).then((nc) => nc.close())).rejects.toThrow(/authorization/i);
  });

  it('reads each service login from bus.credentials, the audit service created the stream with its own', async () => {
    expect(resolveBusLogin(loaded, 'proxy')).toEqual({ credential: { nkeySeed: seeds.proxy } });
    const jsm = await jetstreamManager(await connectAs('audit'));
    expect((await jsm.streams.info(STREAM)).config.subjects).toEqual([`${PREFIX}.>`]);
  });

  it('lets the proxy publish its signed events, which the audit service stores, and look at the stream but not change it', async () => {
    const nc = await connectAs('proxy');
    await ensureEventStream(nc, { stream: STREAM, subjectPrefix: PREFIX, duplicateWindowMs: 120_000 });
    const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix: PREFIX, signer: proxySigner });
    const session = `p-${RUN}`;
    for (let index = 1; index <= 5; index += 1) publisher.publish(decided(session, index));
    await publisher.flush();
    await publisher.close();
    await waitUntil(async () => (await audit!.store.sessionEvents(session)).length === 5, 20_000, 'the proxy events stored');
    const jsm = await jetstreamManager(nc);
    await expect(jsm.streams.update(STREAM, { max_age: 1 })).rejects.toThrow(/permission|timeout/i);
    await expect(jsm.streams.purge(STREAM)).rejects.toThrow(/permission|timeout/i);
  });

  it("does not let the proxy's credentials publish an approval.decided, nor subscribe to the events", async () => {
    const nc = await connectAs('proxy');
    const js = jetstream(nc, { timeout: 2_000 });
    const forged = buildEvent('approval.decided', { id: `forged-${RUN}`, source: 'sluice/approval', subject: 'x', time: new Date(), data: { approvalId: 'a', decision: 'approve', approver: 'dba', reason: '', final: true, via: 'api' } });
    const payload = new TextEncoder().encode(JSON.stringify(forged));
    await expect(js.publish(`${PREFIX}.approval.decided`, payload, { headers: proxySigner.headersFor(payload) })).rejects.toThrow(/permission|timeout/i);
    await expect(js.publish(`${PREFIX}.batch.approval`, payload)).rejects.toThrow(/permission|timeout/i);
    const errors: Error[] = [];
    const watcher = await connectAs('proxy');
    void (async () => {
      for await (const status of watcher.status()) if (status.type === 'error') errors.push(status.error);
    })();
    watcher.subscribe(`${PREFIX}.>`);
    await waitUntil(() => errors.some((error) => /permission/i.test(error.message)), 5_000, 'a subscribe permission violation');
    const admin = new pg.Client({ connectionString: DB_URL });
    await admin.connect();
    try {
      expect((await admin.query(`SELECT 1 FROM sluice.events WHERE id = $1 UNION ALL SELECT 1 FROM sluice.rejected_events WHERE event_id = $1`, [forged.id])).rowCount).toBe(0);
    } finally {
      await admin.end();
    }
  });

  it('gives the SIEM reader the stream through a consumer of its own, but no publishing and not the audit store messages', async () => {
    const nc = await connectAs('siem');
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(STREAM, { durable_name: `siem-${RUN}`, ack_policy: AckPolicy.Explicit });
    const consumer = await jetstream(nc).consumers.get(STREAM, `siem-${RUN}`);
    const message = await consumer.next({ expires: 2_000 });
    expect(message).not.toBeNull();
    expect(message!.subject.startsWith(`${PREFIX}.`)).toBe(true);
    message!.ack();
    const js = jetstream(nc, { timeout: 2_000 });
    await expect(js.publish(`${PREFIX}.command.decided`, new TextEncoder().encode(JSON.stringify(decided(`siem-${RUN}`, 1))))).rejects.toThrow(/permission|timeout/i);
    await expect(jsm.consumers.delete(STREAM, 'audit-store')).rejects.toThrow(/permission|timeout/i);
    await expect(jetstream(nc).consumers.get(STREAM, 'audit-store')).rejects.toThrow(/permission/i);
    const pull = await connectAs('siem');
    const errors: Error[] = [];
    void (async () => {
      for await (const status of pull.status()) if (status.type === 'error') errors.push(status.error);
    })();
    pull.publish(`$JS.API.CONSUMER.MSG.NEXT.${STREAM}.audit-store`, JSON.stringify({ batch: 1, expires: 1_000_000_000 }), { reply: `_INBOX_siem.steal` });
    await waitUntil(() => errors.some((error) => /permission/i.test(error.message)), 5_000, 'a pull permission violation');
  });

  it("red team: the SIEM reader cannot take, ack or pre-create an exporter's durable consumer", async () => {
    // The audit service's own login creates the exporter's consumer, as it does at start.
    const auditJsm = await jetstreamManager(await connectAs('audit'));
    await auditJsm.consumers.add(STREAM, { durable_name: 'audit-export-splunk', ack_policy: AckPolicy.Explicit });
    const nc = await connectAs('siem');
    const errors: Error[] = [];
    void (async () => {
      for await (const status of nc.status()) if (status.type === 'error') errors.push(status.error);
    })();
    nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${STREAM}.audit-export-splunk`, JSON.stringify({ batch: 1, expires: 1_000_000_000 }), { reply: `_INBOX_siem.steal` });
    await waitUntil(() => errors.some((error) => /permission/i.test(error.message)), 5_000, 'a pull permission violation');
    await expect(jetstream(nc).consumers.get(STREAM, 'audit-export-splunk')).rejects.toThrow(/permission/i);
    await expect(jetstreamManager(nc).then((jsm) => jsm.consumers.delete(STREAM, 'audit-export-splunk'))).rejects.toThrow(/permission|timeout/i);
    const before = (await auditJsm.consumers.info(STREAM, 'audit-export-splunk')).num_ack_pending;
    expect(before).toBe(0);
  });

  it('stores nothing a client without the right key signed as genuine, and audit verify names it', async () => {
    // The proxy's login, but an event signed with another key (a stolen NATS password is not enough).
    const nc = await connectAs('proxy');
    const js = jetstream(nc);
    const session = `w-${RUN}`;
    const event = decided(session, 1);
    const payload = new TextEncoder().encode(JSON.stringify(event));
    const wrongKey = createMessageSigner('proxy', generateSigningKeyPair().privateKeyPem);
    await js.publish(`${PREFIX}.command.decided`, payload, { headers: wrongKey.headersFor(payload) });
    const unsigned = decided(session, 2);
    await js.publish(`${PREFIX}.command.decided`, new TextEncoder().encode(JSON.stringify(unsigned)));
    await waitUntil(async () => {
      const result = await audit!.store.verify({ sessionId: session });
      return !result.ok && result.rejected === 2;
    }, 20_000, 'both refused');
    expect(await audit!.store.sessionEvents(session)).toEqual([]);
    let out = '';
    expect(await auditCli(['verify', '--session', session, '--config', join(dir, 'sluice.yaml')], { out: (text) => (out += text), err: (text) => (out += text) })).toBe(1);
    expect(out).toContain(event.id);
    expect(out).toContain('bad signature');
  });

  it('rebuilds approvals with its own NATS login from what the approval service signed, and ignores a forged request', async () => {
    const requested = (id: string) => approvalRequested(id, 1);
    const nc = await connectAs('approval');
    const genuine = new EventPublisher(nc, { source: 'approval', subjectPrefix: PREFIX, signer: approvalSigner });
    await genuine.publishNow(requested(`genuine-${RUN}`));
    // The approval service's NATS login, but not its signing key.
    const impostor = new EventPublisher(nc, { source: 'approval', subjectPrefix: PREFIX, signer: createMessageSigner('approval', generateSigningKeyPair().privateKeyPem) });
    await impostor.publishNow(requested(`forged-${RUN}`));
    const unsigned = new EventPublisher(nc, { source: 'approval', subjectPrefix: PREFIX });
    await unsigned.publishNow(requested(`unsigned-${RUN}`));
    const service = await startApprovalService({ loaded, logger });
    try {
      expect(service.workflow.get(`genuine-${RUN}`)?.status).toBe('pending');
      expect(service.workflow.get(`forged-${RUN}`)).toBeUndefined();
      expect(service.workflow.get(`unsigned-${RUN}`)).toBeUndefined();
    } finally {
      await service.stop();
    }
  });
  it("red team: a genuinely signed decision replayed under another msg id does not count twice toward N-of-M", async () => {
    const id = `n-of-m-${RUN}`;
    const nc = await connectAs('approval');
    const genuine = new EventPublisher(nc, { source: 'approval', subjectPrefix: PREFIX, signer: approvalSigner });
    await genuine.publishNow(approvalRequested(id, 3));
    const decided = buildEvent('approval.decided', {
      id: `${id}-decided-1`,
      source: 'sluice/approval',
      subject: `session-${id}`,
      time: new Date(),
      data: { approvalId: id, decision: 'approve', approver: 'dba-1', reason: 'ok', final: false, via: 'api' },
    });
    // The bytes and headers the approval service publishes (EventPublisher.publishNow), once
    // genuinely, then replayed as they are by whoever can publish on the subject (an open bus on
    // the host) under new msg ids, so JetStream does not drop them as duplicates.
    const payload = new TextEncoder().encode(JSON.stringify(decided));
    const headers = approvalSigner.headersFor(payload);
    for (const msgID of [decided.id, `${id}-replayed-1`, `${id}-replayed-2`]) {
      await jetstream(nc).publish(`${PREFIX}.approval.decided`, payload, { headers, msgID });
    }
    const service = await startApprovalService({ loaded, logger });
    try {
      expect(service.workflow.get(id)?.decisions.map((decision) => decision.approver)).toEqual(['dba-1']);
      const after = await service.workflow.execute(id, { type: 'Decide', decision: 'approve', approver: { sub: 'dba-2', groups: ['dba'], issuer: '' }, reason: 'ok', via: 'api', at: new Date() });
      expect(after.status).toBe('pending');
    } finally {
      await service.stop();
    }
  });
});

describe('the bus over TLS when bus.tls is configured (real nats-server 2.9)', () => {
  it('connects with the configured CA and nkey, and a client without TLS is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-nats-tls-'));
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=sluice-test-ca');
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'san.ext');
    const pair = createUser();
    const seed = new TextDecoder().decode(pair.getSeed());
    writeFileSync(join(dir, 'proxy.nk'), seed);
    const auth = natsAuthorizationConfig([{ role: 'proxy', nkey: pair.getPublicKey() }], 'TLS_STREAM', 'tls.events');
    const nats = await startSecuredNats(`tls { cert_file: ${JSON.stringify(join(dir, 'server.pem'))}, key_file: ${JSON.stringify(join(dir, 'server.key'))} }\n${auth}`);
    try {
      const config = parseConfig({ bus: { url: nats.url, credentials: { proxy: { nkey: { file: 'proxy.nk' } } }, tls: { ca: { file: 'ca.pem' } } } });
      const login = resolveBusLogin({ config, path: join(dir, 'sluice.yaml'), dir }, 'proxy');
      expect(login.tls?.ca).toContain('BEGIN CERTIFICATE');
      const nc = await connectBus(nats.url, 'proxy', login);
      expect(nc.info?.tls_required).toBe(true);
      await nc.close();
      await expect(connectBus(nats.url, 'proxy', { credential: { nkeySeed: seed } }).then((plain) => plain.close())).rejects.toThrow();
    } finally {
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a publisher started before the audit service (real nats-server 2.9)', () => {
  it('waits for the stream its NATS user may not create, instead of failing, and goes on once the audit service made it', async () => {
    const users = (['proxy', 'audit'] as const).map((role) => ({ role, pair: createUser() }));
    const nats = await startSecuredNats(natsAuthorizationConfig(users.map(({ role, pair }) => ({ role, nkey: pair.getPublicKey() })), 'LATE_STREAM', 'late.events'));
    const [proxy, audit] = await Promise.all(
      users.map(({ role, pair }) => connectBus(nats.url, role, { credential: { nkeySeed: new TextDecoder().decode(pair.getSeed()) } })),
    );
    try {
      const settings = { stream: 'LATE_STREAM', subjectPrefix: 'late.events', duplicateWindowMs: 120_000 };
      let proxyReady = false;
      const waiting = ensureEventStream(proxy!, settings).then(() => {
        proxyReady = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(proxyReady).toBe(false);
      await ensureEventStream(audit!, settings);
      await waiting;
      expect(proxyReady).toBe(true);
    } finally {
      await Promise.all([proxy?.close(), audit?.close()]);
      await nats.stop();
    }
  });
});
