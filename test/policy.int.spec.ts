import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { loadConfig } from '@sluice/config';
import { SluiceErrorCode, type Subject } from '@sluice/contracts';
import { decodeEvents } from '@sluice/event-bus';
import { requestPolicyReload, startPolicyService, type RunningPolicyService } from '@sluice/policy';
import { createLogger } from '@sluice/service-runtime';
import { targetCatalogFacts } from '@sluice/sql-classifier';
import { decisionToProto } from '../services/policy/src/grpc.js';
import { createPolicyPort, decisionFromProto } from '../services/proxy/src/ports/policy-client.js';
import { stopTestPolicyService } from './support/policy-service.js';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const RUN = randomBytes(4).toString('hex');
const STREAM = `SLUICE_TEST_POLICY_${RUN}`;
const PREFIX = `sluicetest.policy${RUN}`;

const analyst: Subject = { sub: 'analyst-bot', groups: ['analysts'], issuer: 'http://issuer.test' };
const sql = (text: string) => ({ kind: 'sql' as const, text });

const configWith = (rules: unknown[]) => ({
  bus: { url: NATS_URL, stream: STREAM, subjectPrefix: PREFIX },
  services: { policy: { grpc: '127.0.0.1:0' } },
  resources: [{ name: 'ledger', type: 'postgres', listen: '127.0.0.1:25433', target: { host: '127.0.0.1', database: 'ledger' }, credentials: { username: 'owner' } }],
  rules,
});
const READ_ONLY = [{ name: 'analysts-read', effect: 'allow', subjects: { groups: ['analysts'] }, resources: ['ledger'], actions: ['read'] }];
const READ_WRITE = [{ name: 'analysts-write', effect: 'allow', subjects: { groups: ['analysts'] }, resources: ['ledger'], actions: ['read', 'write'] }];

const until = async (condition: () => boolean, timeoutMs = 5_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

describe('policy service over gRPC with the proxy port', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-policy-'));
  const file = join(dir, 'sluice.yaml');
  const logger = createLogger('policy-test');
  let service: RunningPolicyService;
  let nc: NatsConnection;
  let port: ReturnType<typeof createPolicyPort>;

  beforeAll(async () => {
    writeFileSync(file, stringify(configWith(READ_ONLY)));
    const loaded = loadConfig(file);
    service = await startPolicyService({ loaded, config: loaded.config, logger });
    nc = await connect({ servers: NATS_URL });
    port = createPolicyPort(service.address, { logger });
    await until(() => port.stats().version !== undefined);
  });

  afterAll(async () => stopTestPolicyService({ port, service, nc, stream: STREAM, dir }));

  it("carries a held command's mask profile over the wire: a granted command stays masked", () => {
    const held = { rule: 'r', reason: '', action: 'write', risk: 'high', tables: [], prepares: [], cacheable: false, effect: 'approve', approvers: { groups: ['dba'], subs: [], minApprovals: 1 }, approvalTimeoutMs: 1_000 } as const;
    expect(decisionFromProto(decisionToProto({ ...held, maskProfile: 'pii' }, 1))).toMatchObject({ effect: 'approve', maskProfile: 'pii' });
    expect(decisionFromProto(decisionToProto({ ...held, maskProfile: undefined }, 1))).toMatchObject({ effect: 'approve', maskProfile: undefined });
  });

  it('carries withholdServerTexts over the wire for allowed and held commands, never for a denial', () => {
    const allowed = { rule: 'r', reason: '', action: 'write', risk: 'medium', tables: ['hr.salaries'], prepares: [], cacheable: true, effect: 'allow', maskProfile: undefined } as const;
    expect(decisionFromProto(decisionToProto({ ...allowed, withholdServerTexts: true }, 1))).toMatchObject({ effect: 'allow', withholdServerTexts: true });
    expect(decisionFromProto(decisionToProto(allowed, 1))).not.toHaveProperty('withholdServerTexts');
    expect(decisionFromProto(decisionToProto({ ...allowed, effect: 'deny' }, 1))).not.toHaveProperty('withholdServerTexts');
  });

  it('decides over gRPC: allows a read and denies a write for a read-only subject', async () => {
    expect(await port.decide(analyst, 'ledger', sql('SELECT * FROM orders WHERE id = 1'))).toMatchObject({ effect: 'allow', rule: 'analysts-read', action: 'read' });
    expect(await port.decide(analyst, 'ledger', sql('DELETE FROM orders'))).toMatchObject({ effect: 'deny', action: 'write', risk: 'high' });
    expect(await port.describeSession(analyst, 'ledger')).toEqual({ mayConnect: true, readOnly: true });
  });

  it('answers a repeated statement from the cache without a round trip, also when only constants differ', async () => {
    await port.decide(analyst, 'ledger', sql('SELECT * FROM invoices WHERE id = 10'));
    const before = port.stats();
    const again = await port.decide(analyst, 'ledger', sql('SELECT * FROM invoices WHERE id = 10'));
    const otherConstant = await port.decide(analyst, 'ledger', sql('SELECT * FROM invoices WHERE id = 11'));
    const after = port.stats();
    expect(again.effect).toBe('allow');
    expect(otherConstant.effect).toBe('allow');
    expect(after.misses).toBe(before.misses);
    expect(after.hits).toBe(before.hits + 2);
  });

  it('answers a cached decision synchronously (cachedDecision), and nothing it would have to ask for', async () => {
    // A statement of a shape never decided (the cache also answers a new constant of a known one).
    const select = sql(`SELECT id AS "k${Math.floor(Math.random() * 1e9)}" FROM invoices WHERE id = 1`);
    expect(port.cachedDecision(analyst, 'ledger', select)).toBeUndefined();
    const asked = await port.decide(analyst, 'ledger', select);
    expect(port.cachedDecision(analyst, 'ledger', select)).toBe(asked);
    // Another subject is its own key.
    expect(port.cachedDecision({ ...analyst, sub: 'someone-else' }, 'ledger', select)).toBeUndefined();
  });

  it('answers a new constant of a statement already decided synchronously too (cachedDecision by the normalised text)', async () => {
    const shape = (id: number) => sql(`SELECT * FROM payments WHERE id = ${id}`);
    expect(port.cachedDecision(analyst, 'ledger', shape(1))).toBeUndefined();
    const asked = await port.decide(analyst, 'ledger', shape(1));
    const misses = port.stats().misses;
    expect(port.cachedDecision(analyst, 'ledger', shape(2))).toBe(asked);
    expect(port.cachedDecision(analyst, 'ledger', shape(3))).toBe(asked);
    expect(port.stats().misses).toBe(misses);
  });

  it('gives a shape decided for one subject, search_path or catalog version nothing of it for another, asked in turn', async () => {
    const shape = (id: number) => `SELECT * FROM refunds WHERE id = ${id}`;
    const facts = (version: string) => targetCatalogFacts({ rowFunctions: [], rewritingRelations: [], inheritance: [], version });
    const contexts = [
      { subject: analyst, command: (id: number) => ({ ...sql(shape(id)), searchPath: ['public'], catalog: facts('shape-v1') }) },
      { subject: { ...analyst, sub: 'other-bot' }, command: (id: number) => ({ ...sql(shape(id)), searchPath: ['public'], catalog: facts('shape-v1') }) },
      { subject: analyst, command: (id: number) => ({ ...sql(shape(id)), searchPath: ['audit', 'public'], catalog: facts('shape-v1') }) },
      { subject: analyst, command: (id: number) => ({ ...sql(shape(id)), searchPath: ['public'], catalog: facts('shape-v2') }) },
    ];
    // The first context's shape is decided; each other one, asked right after it, is not answered from it.
    await port.decide(contexts[0]!.subject, 'ledger', contexts[0]!.command(1));
    for (const other of contexts.slice(1)) {
      expect(port.cachedDecision(contexts[0]!.subject, 'ledger', contexts[0]!.command(2))).toMatchObject({ effect: 'allow' });
      expect(port.cachedDecision(other.subject, 'ledger', other.command(2))).toBeUndefined();
      expect(port.cachedDecision(contexts[0]!.subject, 'other-resource', contexts[0]!.command(2))).toBeUndefined();
    }
  });

  it("sends the target's catalog facts over gRPC and keys cached decisions on their version", async () => {
    const text = 'SELECT o.note FROM orders o WHERE id = 1';
    const facts = (version: string, rowFunctions: string[]) =>
      targetCatalogFacts({ rowFunctions, rewritingRelations: [], inheritance: [['public.orders_2024', 'public.orders']], version });
    const before = await port.decide(analyst, 'ledger', { ...sql(text), catalog: facts('v1', []) });
    expect(before).toMatchObject({ effect: 'allow', action: 'read' });
    expect(before.tables).toEqual(['public.orders', 'public.orders_2024']);
    const misses = port.stats().misses;
    // A function note(orders) created since: a new version, so the cached allow is not reused.
    const after = await port.decide(analyst, 'ledger', { ...sql(text), catalog: facts('v2', ['note']) });
    expect(port.stats().misses).toBe(misses + 1);
    expect(after).toMatchObject({ effect: 'deny', action: 'write', risk: 'high' });
    expect(after.reason).toContain('attribute notation');
  });

  it('sends the foreign keys that act on a referenced table over gRPC: a DELETE of it names the tables it reaches', async () => {
    const catalog = targetCatalogFacts({ rowFunctions: [], rewritingRelations: [], inheritance: [], foreignKeyActions: [['books.ledger', 'public.accounts']], version: 'fk-v1' });
    const decision = await port.decide(analyst, 'ledger', { ...sql('DELETE FROM public.accounts WHERE id = 1'), catalog });
    expect(decision.tables).toEqual(['books.ledger', 'public.accounts']);
  });

  it("gives a large command's decision a deadline that grows with its size, a small one none", async () => {
    // A deadline of 0 ms refuses any call; 8 MB of text earns 4 s, enough to be sent and decided.
    const hurried = createPolicyPort(service.address, { logger, timeoutMs: 0 });
    try {
      await expect(hurried.decide(analyst, 'ledger', sql('SELECT 1 FROM orders'))).rejects.toMatchObject({ code: SluiceErrorCode.PolicyUnavailable });
      const large = sql(`SELECT '${'x'.repeat(8 * 1024 * 1024)}' FROM orders`);
      expect(await hurried.decide(analyst, 'ledger', large)).toMatchObject({ effect: 'allow', action: 'read' });
    } finally {
      hurried.close();
    }
  });

  it('does not cache a decision that depends on constants', async () => {
    const before = port.stats().misses;
    await port.decide(analyst, 'ledger', sql('BEGIN READ WRITE'));
    await port.decide(analyst, 'ledger', sql('BEGIN READ WRITE'));
    expect(port.stats().misses).toBe(before + 2);
  });

  it('clears the cache and decides with the new rules after a reload, and publishes policy.changed', async () => {
    const changed = nc.subscribe(`${PREFIX}.policy.changed`, { max: 1 });
    const cachedVersion = port.stats().version!;
    expect((await port.decide(analyst, 'ledger', sql('INSERT INTO orders VALUES (1)'))).effect).toBe('deny');
    writeFileSync(file, stringify(configWith(READ_WRITE)));
    const answer = await requestPolicyReload(service.address);
    expect(answer).toMatchObject({ ok: true, version: cachedVersion + 1 });
    await until(() => port.stats().version === cachedVersion + 1);
    expect(port.stats().size).toBe(0);
    expect(await port.decide(analyst, 'ledger', sql('INSERT INTO orders VALUES (1)'))).toMatchObject({ effect: 'allow', rule: 'analysts-write' });
    expect(await port.describeSession(analyst, 'ledger')).toEqual({ mayConnect: true, readOnly: false });
    for await (const message of changed) {
      const [event] = decodeEvents(message.data);
      expect(event).toMatchObject({ type: 'sluice.policy.changed.v1', subject: 'policy', data: { version: cachedVersion + 1, rules: 1 } });
    }
  });

  it('rejects a bad config file on reload and keeps the previous rules', async () => {
    const version = service.version;
    writeFileSync(file, stringify({ ...configWith(READ_ONLY), rules: [{ name: 'broken', effect: 'maybe' }] }));
    const answer = await requestPolicyReload(service.address);
    expect(answer.ok).toBe(false);
    expect(answer.error).toMatch(/rules\[0\]\.effect/);
    expect(service.version).toBe(version);
    expect((await port.decide(analyst, 'ledger', sql('INSERT INTO orders VALUES (2)'))).effect).toBe('allow');
  });

  it('rejects a reload that changes identity.oidc (the services keep verifying with the issuers they started with) and keeps the previous rules', async () => {
    const version = service.version;
    const issuers = { oidc: [{ issuer: 'https://ci.example.com', audience: 'sluice' }] };
    writeFileSync(file, stringify({ ...configWith(READ_ONLY), identity: issuers }));
    const answer = await requestPolicyReload(service.address);
    expect(answer.ok).toBe(false);
    expect(answer.error).toMatch(/identity\.oidc changed/);
    expect(service.version).toBe(version);
    expect((await port.decide(analyst, 'ledger', sql('INSERT INTO orders VALUES (2)'))).effect).toBe('allow');
  });

  it('fails closed with ERR_POLICY_UNAVAILABLE once the service is stopped, even for a cached statement', async () => {
    await port.decide(analyst, 'ledger', sql('SELECT 42'));
    await service.stop();
    await until(() => port.stats().version === undefined);
    await expect(port.decide(analyst, 'ledger', sql('SELECT 42'))).rejects.toMatchObject({ code: SluiceErrorCode.PolicyUnavailable });
    await expect(port.describeSession(analyst, 'ledger')).rejects.toMatchObject({ code: SluiceErrorCode.PolicyUnavailable });
  });
});
