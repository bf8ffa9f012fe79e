import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { buildEvent, type CloudEvent } from '@sluice/contracts';
import { parseConfig, type LoadedConfig } from '@sluice/config';
import { connectBus, createMessageSigner, EventPublisher, generateSigningKeyPair, type MessageSigner, type NatsConnection } from '@sluice/event-bus';
import { canonicalJson, openEventStore, readWrittenEvents } from '@sluice/event-store';
import { startAuditService, type AuditService } from '@sluice/audit';
import { run as auditCli } from '../cli/src/commands/audit.js';
import { run as replayCli } from '../cli/src/commands/replay.js';
import { freePort } from './support/ports.js';
import { startHttpSink, type HttpSink } from './support/sinks.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { writeSigningKeys } from './support/signing-keys.js';
import { waitUntil } from './support/wait.js';

const RUN = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const DATABASE = `sluice_audit_it_${RUN}`;
const ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const DB_URL = `postgres://postgres@127.0.0.1:5432/${DATABASE}`;
const STREAM = `AUDIT_IT_${RUN}`;
const PREFIX = `it.${RUN}.events`;
const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });

/** One session: started, a command decided/completed/result, a denied command, ended. */
const sessionEvents = (session: string, sub: string, at: number): CloudEvent[] => {
  const time = (offset: number) => new Date(at + offset);
  const common = { source: 'proxy', subject: session };
  return [
    buildEvent('session.started', { ...common, id: `${session}-1`, time: time(0), data: { resource: 'shop-db', protocol: 'postgres', subject: { sub, groups: ['support'], issuer: 'http://idp' }, client: '127.0.0.1:5000', readOnly: true } }),
    buildEvent('command.decided', { ...common, id: `${session}-2`, time: time(1), data: { commandId: `${session}-c1`, resource: 'shop-db', protocol: 'postgres', command: 'SELECT email FROM customers LIMIT 1', action: 'read', risk: 'low', decision: 'allow', rule: 'support-read', reason: 'allowed' } }),
    buildEvent('command.completed', { ...common, id: `${session}-3`, time: time(2), data: { commandId: `${session}-c1`, outcome: 'SELECT 1', ok: true, durationMs: 1 } }),
    buildEvent('result.returned', { ...common, id: `${session}-4`, time: time(2), data: { commandId: `${session}-c1`, columns: ['email'], rows: [['a***@example.com']], rowCount: 1, bytes: 16, truncated: false, maskedCounts: { email: 1 } } }),
    buildEvent('command.decided', { ...common, id: `${session}-5`, time: time(3), data: { commandId: `${session}-c2`, resource: 'shop-db', protocol: 'postgres', command: 'DROP TABLE customers', action: 'ddl', risk: 'high', decision: 'deny', rule: 'default-deny', reason: 'no rule allows ddl' } }),
    buildEvent('session.ended', { ...common, id: `${session}-6`, time: time(4), data: { resource: 'shop-db', reason: 'client closed', commands: 2, durationMs: 4 } }),
  ];
};

describe('audit service against NATS JetStream and PostgreSQL', () => {
  let nc: NatsConnection;
  let publisher: EventPublisher;
  let service: AuditService | undefined;
  let sink: HttpSink;
  let sinkUp = false;
  let syslog: Server;
  let syslogText = '';
  let loaded: LoadedConfig;
  let dir: string;
  let idp: TestIssuer;
  /** A token of the `compliance` group, named in audit.readers. */
  let readerToken: string;
  /** Signs as the proxy with the key the audit service knows. */
  let proxySigner: MessageSigner;
  const published: CloudEvent[] = [];
  const asReader = (url: string): Promise<Response> => fetch(url, { headers: { authorization: `Bearer ${readerToken}` } });

  const startService = async () => {
    service = await startAuditService({ loaded, logger });
    return service;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-audit-it-'));
    idp = await startTestIssuer();
    const { signers, privateKeys } = writeSigningKeys(dir);
    proxySigner = createMessageSigner('proxy', privateKeys.proxy!);
    readerToken = await idp.mint({ sub: 'carol', groups: ['compliance'] });
    sink = await startHttpSink(() => (sinkUp ? { status: 200 } : { status: 503 }));
    syslog = createServer((socket) => socket.on('data', (chunk: Buffer) => (syslogText += chunk.toString('utf8'))));
    await new Promise<void>((resolve) => syslog.listen(0, '127.0.0.1', resolve));
    const auditPort = await freePort();
    const document = {
      bus: { url: 'nats://127.0.0.1:4222', stream: STREAM, subjectPrefix: PREFIX },
      services: { audit: { http: `127.0.0.1:${auditPort}` } },
      identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
      provenance: { signers },
      audit: {
        readers: { groups: ['compliance'], subs: ['auditor-1'] },
        exporters: [
          { type: 'webhook', format: 'ocsf', url: `${sink.url}/siem`, name: 'siem' },
          { type: 'syslog', format: 'cef', host: '127.0.0.1', port: (syslog.address() as { port: number }).port, name: 'syslog' },
        ],
      },
    };
    writeFileSync(join(dir, 'sluice.yaml'), stringify({ ...document, eventStore: { url: DB_URL } }));
    const config = parseConfig(document);
    loaded = { config: { ...config, bus: { ...config.bus, url: 'nats://127.0.0.1:4222' }, eventStore: { url: DB_URL } }, path: join(dir, 'sluice.yaml'), dir };
    nc = await connectBus('nats://127.0.0.1:4222', 'audit-it');
    await startService();
    publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix: PREFIX, maxBatchEvents: 50, signer: proxySigner });
  });

  afterAll(async () => {
    await service?.stop();
    await publisher?.close();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(STREAM).catch(() => undefined);
    await nc?.drain();
    await sink?.close();
    await idp?.close();
    await new Promise((resolve) => syslog?.close(resolve));
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores the events of 100 sessions once each, in order per session, and every chain verifies', async () => {
    const start = Date.now();
    const perSession = Array.from({ length: 100 }, (_, index) => sessionEvents(`s${RUN}-${index}`, `agent-${index % 5}`, start + index));
    // Interleave sessions as a busy proxy would, and publish a few events twice.
    for (let step = 0; step < 6; step += 1) for (const events of perSession) published.push(events[step]!);
    for (const event of published) publisher.publish(event);
    for (const event of published.slice(0, 30)) publisher.publish({ ...event });
    await publisher.flush();
    await waitUntil(async () => (await service!.store.countEvents()) >= published.length, 20_000, 'all events stored');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await service!.store.countEvents()).toBe(published.length);

    const stored = await service!.store.sessionEvents(`s${RUN}-7`);
    expect(stored.map((event) => event.id)).toEqual(perSession[7]!.map((event) => event.id));
    expect(stored[0]!.prev_hash).toBe('0'.repeat(64));
    expect(stored[1]!.prev_hash).toBe(stored[0]!.hash);
    expect(await service!.store.verify()).toEqual({ ok: true, sessions: 100, events: published.length });
  });

  it('answers the sessions and events HTTP API when filtered by subject and resource', async () => {
    const base = `http://${service!.httpAddress}`;
    const page = (await (await asReader(`${base}/v1/sessions?subject=agent-3&resource=shop-db&from=1h&limit=500`)).json()) as { sessions: Array<{ session_id: string; subject: string; commands: number; denials: number; masked_values: number }> };
    expect(page.sessions).toHaveLength(20);
    expect(page.sessions.every((session) => session.subject === 'agent-3')).toBe(true);
    expect(page.sessions[0]).toMatchObject({ commands: 2, denials: 1, masked_values: 1 });
    const denied = (await (await asReader(`${base}/v1/sessions?decision=deny&limit=2`)).json()) as { sessions: unknown[]; next?: string };
    expect(denied.sessions).toHaveLength(2);
    expect(denied.next).toBeDefined();

    const events = (await (await asReader(`${base}/v1/sessions/s${RUN}-3/events`)).json()) as { events: Array<{ id: string; seq: number; hash: string; prev_hash: string; type: string }> };
    expect(events.events.map((event) => event.type)).toEqual(perSessionTypes);
    expect(events.events[2]!.prev_hash).toBe(events.events[1]!.hash);
    expect((await asReader(`${base}/v1/sessions/nope/events`)).status).toBe(404);
    expect(await (await asReader(`${base}/v1/sessions/s${RUN}-3/verify`)).json()).toMatchObject({ ok: true, events: 6 });
  });

  it('answers the audit API only to a reader: 401 without a valid token, 403 to anyone else, health and metrics open', async () => {
    const base = `http://${service!.httpAddress}`;
    const dataPaths = ['/v1/sessions', `/v1/sessions/s${RUN}-3/events`, `/v1/sessions/s${RUN}-3/verify`, '/v1/verify', '/v1/unknown'];
    const agent = await idp.mint({ sub: 'agent-3', groups: ['support'] });
    const expired = await idp.mint({ sub: 'carol', groups: ['compliance'], expiresIn: -120 });
    const forged = await idp.mint({ sub: 'carol', groups: ['compliance'], foreignKey: true });
    const bySub = await idp.mint({ sub: 'auditor-1' });
    for (const path of dataPaths) {
      const anonymous = await fetch(`${base}${path}`);
      expect(anonymous.status, path).toBe(401);
      expect(anonymous.headers.get('www-authenticate'), path).toMatch(/^Bearer/);
      expect(((await anonymous.json()) as { code: string }).code).toBe('ERR_TOKEN_INVALID');
      for (const token of [expired, forged, 'not-a-jwt', idp.mintUnsigned({ sub: 'carol', groups: ['compliance'] }), await idp.mintSymmetric({ sub: 'carol', groups: ['compliance'] })]) {
        const refused = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
        expect(refused.status, path).toBe(401);
        await refused.body?.cancel();
      }
      const outsider = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${agent}` } });
      expect(outsider.status, path).toBe(403);
      expect(((await outsider.json()) as { code: string }).code).toBe('ERR_NOT_AN_AUDIT_READER');
    }
    expect((await asReader(`${base}/v1/verify`)).status).toBe(200);
    expect((await fetch(`${base}/v1/verify`, { headers: { authorization: `Bearer ${bySub}` } })).status).toBe(200);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  });

  it('red team: a reader cannot break the audit API with malformed ids, traversal, SQL in filters or huge limits', async () => {
    const base = `http://${service!.httpAddress}`;
    // A malformed escape is the caller's mistake (400), never an "event store unavailable" alarm.
    const malformed = await asReader(`${base}/v1/sessions/%E0%A4%A/events`);
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { code: string }).code).toBe('ERR_BAD_REQUEST');
    expect((await asReader(`${base}/v1/sessions/%E0%A4%A/verify`)).status).toBe(400);
    // An encoded slash stays part of the id: it names no other route.
    expect((await asReader(`${base}/v1/sessions/..%2F..%2Fverify/events`)).status).toBe(404);
    const injected = await asReader(`${base}/v1/sessions?subject=${encodeURIComponent("x' OR '1'='1")}&decision=${encodeURIComponent("deny' OR true --")}`);
    expect(injected.status).toBe(200);
    expect(((await injected.json()) as { sessions: unknown[] }).sessions).toEqual([]);
    const huge = await asReader(`${base}/v1/sessions?limit=999999999999999999999`);
    expect(huge.status).toBe(200);
    expect(((await huge.json()) as { sessions: unknown[] }).sessions.length).toBeLessThanOrEqual(1000);
    expect((await asReader(`${base}/v1/sessions?limit=-1`)).status).toBe(400);
    expect((await asReader(`${base}/v1/sessions?from=${encodeURIComponent('now(); DROP TABLE x')}`)).status).toBe(400);
    expect((await asReader(`${base}/v1/sessions?cursor=${encodeURIComponent('1 OR 1=1')}`)).status).toBe(200);
    const post = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${readerToken}` } });
    expect(post.status).toBe(405);
  });

  it('red team: answers a session of any length page by page (an agent decides how long it is)', async () => {
    const base = `http://${service!.httpAddress}`;
    type Page = { events: Array<{ id: string; seq: number }>; next?: string };
    const all = (await (await asReader(`${base}/v1/sessions/s${RUN}-3/events`)).json()) as Page;
    expect(all.events).toHaveLength(6);
    expect(all.next).toBeUndefined();
    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const page = (await (await asReader(`${base}/v1/sessions/s${RUN}-3/events?limit=4${after === undefined ? '' : `&after=${after}`}`)).json()) as Page;
      expect(page.events.length).toBeLessThanOrEqual(4);
      seen.push(...page.events.map((event) => event.id));
      after = page.next;
      pages += 1;
    } while (after !== undefined);
    expect(pages).toBe(2);
    expect(seen).toEqual(all.events.map((event) => event.id));
    expect((await asReader(`${base}/v1/sessions/s${RUN}-3/events?limit=0`)).status).toBe(400);
    expect((await asReader(`${base}/v1/sessions/s${RUN}-3/events?after=1%20OR%201=1`)).status).toBe(400);
  });

  it.todo('red team: GET /v1/verify recomputes every chain on each request; bound or cache it so one reader cannot keep the event store busy');

  it('the CLI reads the audit API with the token from --token or SLUICE_TOKEN and reports a refused one', async () => {
    const config = join(dir, 'sluice.yaml');
    const agent = await idp.mint({ sub: 'agent-3', groups: ['support'] });
    let out = '';
    const io = { out: (text: string) => (out += text), err: (text: string) => (out += text) };
    expect(await auditCli(['verify', '--session', `s${RUN}-3`, '--token', agent, '--config', config], io)).toBe(1);
    expect(out).toContain('403');
    out = '';
    process.env.SLUICE_TOKEN = readerToken;
    try {
      expect(await auditCli(['verify', '--session', `s${RUN}-3`, '--config', config], io)).toBe(0);
    } finally {
      delete process.env.SLUICE_TOKEN;
    }
    expect(out).toContain('OK, 6 events');
  });

  it('prints a session with its commands, decisions and masked data when replayed', async () => {
    let out = '';
    const code = await replayCli([`s${RUN}-4`, '--token', readerToken, '--config', join(dir, 'sluice.yaml')], { out: (text) => (out += text), err: (text) => (out += text) });
    expect(code).toBe(0);
    expect(out).toContain('SELECT email FROM customers LIMIT 1');
    expect(out).toContain('decision: allow by rule support-read');
    expect(out).toContain('a***@example.com');
    expect(out).toContain('decision: deny by rule default-deny');
    expect(out.indexOf('SELECT email')).toBeLessThan(out.indexOf('DROP TABLE'));
  });

  it('lists sessions as a table when queried by subject from the CLI', async () => {
    let out = '';
    const code = await auditCli(['query', '--subject', 'agent-1', '--since', '1h', '--token', readerToken, '--config', join(dir, 'sluice.yaml')], { out: (text) => (out += text), err: (text) => (out += text) });
    expect(code).toBe(0);
    expect(out).toMatch(/^SESSION\s+SUBJECT\s+RESOURCE/);
    expect(out.trim().split('\n')).toHaveLength(2 + 20);
  });

  it('refuses UPDATE, DELETE and TRUNCATE on sluice.events when the triggers are in place', async () => {
    const client = new pg.Client({ connectionString: DB_URL });
    await client.connect();
    try {
      await expect(client.query(`UPDATE sluice.events SET data = '{}' WHERE seq = 1`)).rejects.toMatchObject({ code: '42501' });
      await expect(client.query('DELETE FROM sluice.events WHERE seq = 1')).rejects.toMatchObject({ code: '42501' });
      await expect(client.query('TRUNCATE sluice.events')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await client.end();
    }
  });

  it('loses and doubles nothing when the audit service is stopped mid-stream and restarted', async () => {
    const start = Date.now();
    const burst = Array.from({ length: 300 }, (_, index) => sessionEvents(`r${RUN}-${index}`, 'agent-restart', start)).flat();
    const before = await service!.store.countEvents();
    for (const event of burst.slice(0, 900)) publisher.publish(event);
    await waitUntil(async () => (await service!.store.countEvents()) > before, 20_000, 'storing to begin');
    await service!.stop();
    for (const event of burst.slice(900)) publisher.publish(event);
    await publisher.flush();
    await startService();
    await waitUntil(async () => (await service!.store.countEvents()) >= before + burst.length, 30_000, 'all events after restart');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await service!.store.countEvents()).toBe(before + burst.length);
    published.push(...burst);
    const verified = await service!.store.verify();
    expect(verified).toMatchObject({ ok: true, events: before + burst.length });
  });

  it('delivers every event once, OCSF-shaped, to a webhook SIEM that was down for a while', async () => {
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(sink.received.length).toBeGreaterThan(0);
    sinkUp = true;
    const delivered = () =>
      sink.received
        .filter((request) => request.url === '/siem' && deliveredOk.has(request))
        .flatMap((request) => JSON.parse(request.body) as Array<{ metadata: { uid: string } }>);
    const deliveredOk = new Set<object>();
    const seen = new Set(sink.received);
    await waitUntil(
      () => {
        for (const request of sink.received) {
          if (seen.has(request)) continue;
          seen.add(request);
          deliveredOk.add(request);
        }
        return delivered().length >= published.length;
      },
      30_000,
      'the SIEM to catch up',
    );
    const events = delivered();
    const ids = events.map((event) => event.metadata.uid);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(ids)).toEqual(new Set(published.map((event) => event.id)));
    const started = events.find((event) => event.metadata.uid === `s${RUN}-0-1`) as unknown as Record<string, unknown>;
    expect(started).toMatchObject({ class_uid: 3002, activity_id: 1, status_id: 1, metadata: { product: { name: 'Sluice' } }, actor: { user: { name: 'agent-0' } } });
    const denied = events.find((event) => event.metadata.uid === `s${RUN}-0-5`) as unknown as Record<string, unknown>;
    expect(denied).toMatchObject({ class_uid: 6005, disposition_id: 2, status_id: 2, actor: { user: { name: 'agent-0' } } });
    expect(typeof denied.time).toBe('number');
  });

  it('sends CEF lines over TCP to a syslog listener', async () => {
    await waitUntil(() => syslogText.includes(`externalId=s${RUN}-99-6`), 20_000, 'syslog lines');
    const line = syslogText.split('\n').find((text) => text.includes(`externalId=s${RUN}-0-5`))!;
    expect(line).toMatch(/^<108>1 \S+ \S+ sluice - command\.decided - CEF:0\|Sluice\|Sluice\|[^|]+\|command\.decided\|/);
    expect(line).toContain('act=deny');
    expect(line).toContain('suser=agent-0');
  });

  it('fails verify naming the altered event when a row is changed with the triggers disabled', async () => {
    const client = new pg.Client({ connectionString: DB_URL });
    await client.connect();
    try {
      const { rows } = await client.query<{ seq: string }>(`SELECT seq FROM sluice.events WHERE id = $1`, [`s${RUN}-42-2`]);
      await client.query('ALTER TABLE sluice.events DISABLE TRIGGER ALL');
      await client.query(`UPDATE sluice.events SET data = jsonb_set(data, '{command}', '"SELECT 1"') WHERE id = $1`, [`s${RUN}-42-2`]);
      await client.query('ALTER TABLE sluice.events ENABLE TRIGGER ALL');
      const result = await service!.store.verify();
      expect(result).toMatchObject({ ok: false, firstBroken: { id: `s${RUN}-42-2`, seq: Number(rows[0]!.seq), sessionId: `s${RUN}-42` } });

      let out = '';
      const code = await auditCli(['verify', '--config', join(dir, 'sluice.yaml')], { out: (text) => (out += text), err: (text) => (out += text) });
      expect(code).toBe(1);
      expect(out).toContain(`s${RUN}-42-2`);
      expect(out).toContain(`seq ${rows[0]!.seq}`);
      const untouched = await auditCli(['verify', '--session', `s${RUN}-41`, '--config', join(dir, 'sluice.yaml')], { out: () => undefined, err: () => undefined });
      expect(untouched).toBe(0);
    } finally {
      await client.end();
    }
  });

  it('skips a foreign event without a required attribute and keeps storing the events behind it', async () => {
    const before = await service!.store.countEvents();
    const valid = sessionEvents(`f${RUN}`, 'agent-foreign', Date.now());
    const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
    const js = jetstream(nc);
    // Signed by the proxy: what is wrong here is the events themselves, not who sent them.
    const signed = (value: unknown) => {
      const payload = encode(value);
      return [payload, { headers: proxySigner.headersFor(payload) }] as const;
    };
    await js.publish(`${PREFIX}.batch.foreign`, ...signed([{ specversion: '1.0', id: `f${RUN}-bad`, type: 'sluice.session.started.v1', subject: 'x', time: new Date().toISOString(), data: {} }, valid[0]]));
    await js.publish(`${PREFIX}.command.decided`, ...signed({ specversion: '1.0', id: `f${RUN}-bad-2`, source: 'elsewhere', type: 'sluice.command.decided.v1', subject: 'x', time: 'yesterday', data: {} }));
    await js.publish(`${PREFIX}.command.decided`, ...signed({ specversion: '1.0', note: `f${RUN}-no-id` }));
    for (const event of valid.slice(1)) publisher.publish(event);
    await publisher.flush();
    // The valid events, and one `event.rejected` alert for each of the three refused.
    await waitUntil(async () => (await service!.store.countEvents()) >= before + valid.length + 3, 20_000, 'the valid events stored');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await service!.store.countEvents()).toBe(before + valid.length + 3);
    expect((await service!.store.sessionEvents('audit')).filter((event) => (event.data as { eventId?: string }).eventId?.startsWith(`f${RUN}-bad`))).toHaveLength(2);
    expect((await service!.store.sessionEvents('audit')).some((event) => (event.data as { reason?: string }).reason === 'no event with an id')).toBe(true);
  });

  it('stores an event the same from the bytes a publisher wrote as from bytes it must parse, and only the events a batch holds', async () => {
    const js = jetstream(nc);
    const signed = (text: string) => {
      const payload = new TextEncoder().encode(text);
      return [payload, { headers: proxySigner.headersFor(payload) }] as const;
    };
    const session = `w${RUN}`;
    const decided = (id: string, command: string) =>
      buildEvent('command.decided', { id, source: 'proxy', subject: session, time: new Date('2026-01-02T03:04:05.678Z'), sessionseq: 1, data: { commandId: `${session}-c`, resource: 'shop-db', protocol: 'postgres', command, action: 'read', risk: 'low', decision: 'allow', rule: 'r', reason: 'é € 😀 \u2028 "quoted"\ttab' } });
    // A string that looks like the end of one event and the start of another.
    const lookalike = `x"},{"data":{},"id":"${session}-smuggled","source":"proxy","specversion":"1.0","subject":"${session}","time":"2026-01-02T03:04:05.678Z","type":"sluice.command.decided.v1"}]`;
    const asWritten = decided(`${session}-a`, lookalike);
    // The same event written otherwise (spaces, keys out of order, an escape JSON.stringify does not write): parsed, not taken as written.
    const otherwise = decided(`${session}-b`, lookalike);
    const { type, ...rest } = otherwise;
    const spaced = JSON.stringify({ type, ...rest }, null, 1).replace('"read"', '"\\u0072ead"');
    // As Sluice's publishers write it: its canonical text, taken as written.
    const written = `[${canonicalJson(asWritten)}]`;
    expect(readWrittenEvents(new TextEncoder().encode(written))).toHaveLength(1);
    expect(readWrittenEvents(new TextEncoder().encode(`[${spaced}]`))).toBeUndefined();
    await js.publish(`${PREFIX}.batch.written`, ...signed(written));
    await js.publish(`${PREFIX}.batch.parsed`, ...signed(`[${spaced}]`));
    const client = new pg.Client({ connectionString: DB_URL });
    await client.connect();
    try {
      const rows = async () =>
        (await client.query(`SELECT id, type, kind, source, time, data, ext, resource, subject_sub, command_id, approval_id, decision, masked_values, signed_by FROM sluice.events WHERE session_id = $1 ORDER BY session_seq`, [session])).rows as Array<Record<string, unknown>>;
      await waitUntil(async () => (await rows()).length >= 2, 20_000, 'both events stored');
      await new Promise((resolve) => setTimeout(resolve, 300));
      const [a, b] = await rows();
      expect(await rows()).toHaveLength(2);
      expect({ ...a, id: '' }).toEqual({ ...b, id: '' });
      expect(a).toMatchObject({ id: asWritten.id, resource: 'shop-db', decision: 'allow', signed_by: 'proxy', data: { command: lookalike } });
      expect(await service!.store.verify({ sessionId: session })).toMatchObject({ ok: true, events: 2 });
    } finally {
      await client.end();
    }
  });

  it('keeps unsigned, wrongly signed and out-of-role events as rejected records, alerts, and audit verify names them', async () => {
    const js = jetstream(nc);
    const forged = (id: string, kind: 'command.decided' | 'approval.decided') =>
      kind === 'command.decided'
        ? sessionEvents(`x${RUN}-${id}`, 'mallory', Date.now())[1]!
        : buildEvent('approval.decided', { id: `x${RUN}-${id}-1`, source: 'proxy', subject: `x${RUN}-${id}`, time: new Date(), data: { approvalId: 'a1', decision: 'approve', approver: 'dba', reason: 'forged', final: true, via: 'api' } });
    const payload = (event: CloudEvent) => new TextEncoder().encode(JSON.stringify(event));
    const unsigned = forged('unsigned', 'command.decided');
    const wrongKey = forged('wrongkey', 'command.decided');
    const outOfRole = forged('role', 'approval.decided');
    const stranger = createMessageSigner('proxy', generateSigningKeyPair().privateKeyPem);
    await js.publish(`${PREFIX}.command.decided`, payload(unsigned));
    await js.publish(`${PREFIX}.command.decided`, payload(wrongKey), { headers: stranger.headersFor(payload(wrongKey)) });
    // A valid proxy signature, but the proxy may not vouch for an approval decision.
    await js.publish(`${PREFIX}.approval.decided`, payload(outOfRole), { headers: proxySigner.headersFor(payload(outOfRole)) });
    // Signed by the proxy key, then altered in transit.
    const tampered = forged('tampered', 'command.decided');
    const tamperedHeaders = proxySigner.headersFor(payload(tampered));
    await js.publish(`${PREFIX}.command.decided`, payload({ ...tampered, data: { ...tampered.data, command: 'SELECT 1' } }), { headers: tamperedHeaders });

    const client = new pg.Client({ connectionString: DB_URL });
    await client.connect();
    try {
      const reasons = async () =>
        (await client.query<{ event_id: string; reason: string; claimed_signer: string | null }>(`SELECT event_id, reason, claimed_signer FROM sluice.rejected_events WHERE event_id LIKE $1 ORDER BY seq`, [`x${RUN}-%`])).rows;
      await waitUntil(async () => (await reasons()).length >= 4, 20_000, 'four rejected records');
      expect(await reasons()).toEqual([
        { event_id: unsigned.id, reason: 'unsigned', claimed_signer: null },
        { event_id: wrongKey.id, reason: 'bad signature for signer proxy', claimed_signer: 'proxy' },
        { event_id: outOfRole.id, reason: 'signer proxy may not publish sluice.approval.decided.v1', claimed_signer: 'proxy' },
        { event_id: tampered.id, reason: 'bad signature for signer proxy', claimed_signer: 'proxy' },
      ]);
      const genuine = await client.query(`SELECT id FROM sluice.events WHERE id = ANY($1)`, [[unsigned.id, wrongKey.id, outOfRole.id, tampered.id]]);
      expect(genuine.rows).toEqual([]);
      // Each refusal raised an alert, itself signed by the audit service and stored as genuine.
      await waitUntil(
        async () => (await client.query(`SELECT 1 FROM sluice.events WHERE kind = 'event.rejected' AND data->>'eventId' LIKE $1`, [`x${RUN}-%`])).rowCount === 4,
        20_000,
        'four alerts stored',
      );
      const alert = await client.query(`SELECT signed_by, data FROM sluice.events WHERE kind = 'event.rejected' AND data->>'eventId' = $1`, [unsigned.id]);
      expect(alert.rows[0]).toMatchObject({ signed_by: 'audit', data: { reason: 'unsigned', natsSubject: `${PREFIX}.command.decided` } });
      const genuineSigners = await client.query(`SELECT DISTINCT signed_by FROM sluice.events WHERE id LIKE $1`, [`s${RUN}-%`]);
      expect(genuineSigners.rows).toEqual([{ signed_by: 'proxy' }]);
    } finally {
      await client.end();
    }

    const metrics = await (await fetch(`http://${service!.httpAddress}/metrics`)).text();
    expect(Number(/sluice_audit_consumer_refused_total\{consumer="audit-store"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(4);
    expect(await service!.store.verify({ sessionId: `x${RUN}-unsigned` })).toMatchObject({ ok: false, rejected: 1, firstBroken: { kind: 'rejected', id: unsigned.id, reason: expect.stringContaining('unsigned') } });
    let out = '';
    const code = await auditCli(['verify', '--session', `x${RUN}-role`, '--token', readerToken, '--config', join(dir, 'sluice.yaml')], { out: (text) => (out += text), err: (text) => (out += text) });
    expect(code).toBe(1);
    expect(out).toContain(outOfRole.id);
    expect(out).toContain('may not publish');
    out = '';
    expect(await auditCli(['verify', '--config', join(dir, 'sluice.yaml')], { out: (text) => (out += text), err: (text) => (out += text) })).toBe(1);
  });
});

const perSessionTypes = ['session.started', 'command.decided', 'command.completed', 'result.returned', 'command.decided', 'session.ended'].map((kind) => `sluice.${kind}.v1`);

describe('embedded event store (PGlite)', () => {
  it('appends, chains and verifies events when no database URL is configured', async () => {
    const path = mkdtempSync(join(tmpdir(), 'sluice-pglite-'));
    const store = await openEventStore({ path });
    try {
      const events = sessionEvents('p1', 'agent-p', Date.now());
      // Stored as the audit service stores what the proxy provably signed.
      expect(await store.append(await store.prepare(events, () => 'proxy'))).toEqual({ stored: 6, duplicates: 0 });
      expect(await store.append(events.slice(0, 2))).toEqual({ stored: 0, duplicates: 2 });
      expect(await store.verify()).toEqual({ ok: true, sessions: 1, events: 6 });
      const page = await store.listSessions({ subject: 'agent-p' });
      expect(page.sessions[0]).toMatchObject({ session_id: 'p1', commands: 2, denials: 1, masked_values: 1 });
      expect((await store.sessionEvents('p1')).map((event) => event.id)).toEqual(events.map((event) => event.id));
    } finally {
      await store.close();
      rmSync(path, { recursive: true, force: true });
    }
  }, 120_000);
});
