import { describe, expect, it } from 'vitest';
import { failClosedDecision, maskProfileOf, SluiceErrorCode, type Decision, type SluiceEventDataByKind, type SluiceEventKind } from '@sluice/contracts';
import type { ProfileMasker } from '@sluice/masking-engine';
import type { ApprovalOutcome, ApprovalPort, GovernancePorts, PolicyPort } from '../ports.js';
import { admitSession } from './admission.js';
import { Governor, POLICY_UNAVAILABLE, unreachable } from './governor.js';

const subject = { sub: 'agent-7', groups: ['support'], issuer: 'https://issuer.test' };
const basis = { rule: 'r', reason: 'because', action: 'read', risk: 'low', tables: ['public.orders'], prepares: [] } as const;
const allow: Decision = { ...basis, effect: 'allow', maskProfile: 'pii' };
const approve: Decision = { ...basis, effect: 'approve', approvers: { groups: ['dba'], subs: [], minApprovals: 1 }, approvalTimeoutMs: 1_000, maskProfile: 'pii' };
const deny: Decision = { ...basis, effect: 'deny' };

interface Recorded {
  readonly sessionId: string;
  readonly kind: SluiceEventKind;
  readonly data: unknown;
}

/** In-memory ports: each test replaces the one it is about. */
const portsWith = (overrides: Partial<GovernancePorts>, recorded: Recorded[] = []): GovernancePorts => ({
  identity: { verify: () => Promise.reject(new Error('unused')) },
  policy: { describeSession: async () => ({ mayConnect: true, readOnly: false }), decide: async () => allow },
  masking: { masker: () => undefined, maskCommandText: (text) => text.replace(/\d{3}-\d{2}-\d{4}/g, '***') },
  approvals: {
    request: async () => ({ approvalId: 'a-1', expiresAt: new Date(0) }),
    awaitDecision: async () => ({ outcome: 'granted', approvers: ['dba-1'], reason: '' }),
    consume: async () => true,
  },
  audit: {
    healthy: true,
    record: <K extends SluiceEventKind>(sessionId: string, kind: K, data: SluiceEventDataByKind[K]) => void recorded.push({ sessionId, kind, data }),
  },
  recording: { maxRows: 10, maxBytes: 1_000 },
  newId: () => 'id-1',
  now: () => new Date(0),
  ...overrides,
});

const governorOf = (ports: GovernancePorts, protocol: 'postgres' | 'redis' | 'http' = 'redis') =>
  new Governor(ports, { id: 's-1', resource: 'cache', subject, protocol });

describe('the Decision union', () => {
  it('carries a mask profile when allowed or held (a granted command is masked too), approvers only when held', () => {
    expect(maskProfileOf(allow)).toBe('pii');
    expect(maskProfileOf(approve)).toBe('pii');
    expect(maskProfileOf(deny)).toBeUndefined();
    // @ts-expect-error a denial has no mask profile to read
    expect(deny.maskProfile).toBeUndefined();
    // @ts-expect-error an allowed command has no approvers
    expect(allow.approvers).toBeUndefined();
  });

  it('is handled exhaustively: every effect has a branch, and an unknown one throws', () => {
    const answer = (decision: Decision): string => {
      switch (decision.effect) {
        case 'allow':
          return `allow ${decision.maskProfile ?? '-'}`;
        case 'approve':
          return `hold for ${decision.approvers.groups.join(',')}`;
        case 'deny':
          return 'deny';
        default:
          return unreachable(decision);
      }
    };
    expect([allow, approve, deny].map(answer)).toEqual(['allow pii', 'hold for dba', 'deny']);
    expect(() => answer({ ...basis, effect: 'maybe' } as unknown as Decision)).toThrow(TypeError);
  });

  it('fails closed as an admin command of critical risk, by no rule', () => {
    expect(failClosedDecision('why')).toEqual({ effect: 'deny', rule: '', reason: 'why', action: 'admin', risk: 'critical', tables: [], prepares: [] });
  });
});

describe('Governor.decide', () => {
  it('passes the policy answer through', async () => {
    await expect(governorOf(portsWith({})).decide({ kind: 'redis', args: [Buffer.from('GET')] })).resolves.toEqual({ decision: allow, unavailable: false });
  });

  it.each([
    ['rejects', { describeSession: async () => ({ mayConnect: true, readOnly: true }), decide: () => Promise.reject(new Error('connection refused')) }],
    [
      'throws synchronously',
      {
        describeSession: async () => ({ mayConnect: true, readOnly: true }),
        decide: () => {
          throw new Error('boom');
        },
      },
    ],
  ] satisfies [string, PolicyPort][])('denies when the policy port %s (fail closed)', async (_how, policy) => {
    const verdict = await governorOf(portsWith({ policy })).decide({ kind: 'http', method: 'GET', path: '/' });
    expect(verdict).toEqual({ decision: failClosedDecision(POLICY_UNAVAILABLE), unavailable: true });
  });
});

describe('Governor.cachedVerdict', () => {
  const get = { kind: 'redis', args: [Buffer.from('GET'), Buffer.from('k')] } as const;
  const withCache = (cachedDecision: PolicyPort['cachedDecision']): PolicyPort => ({ describeSession: async () => ({ mayConnect: true, readOnly: false }), decide: async () => deny, cachedDecision });

  it('answers at once only what the policy port has cached', () => {
    expect(governorOf(portsWith({ policy: withCache(() => allow) })).cachedVerdict(get)).toEqual({ decision: allow, unavailable: false });
    expect(governorOf(portsWith({ policy: withCache(() => undefined) })).cachedVerdict(get)).toBeUndefined();
    // A port without a cache: always asked.
    expect(governorOf(portsWith({})).cachedVerdict(get)).toBeUndefined();
  });

  it('is no answer (never an allow) when the cache throws: decide then asks and fails closed', () => {
    const broken = withCache(() => {
      throw new Error('boom');
    });
    expect(governorOf(portsWith({ policy: broken })).cachedVerdict(get)).toBeUndefined();
  });
});

describe('Governor records', () => {
  it('records command.decided once, with tables only for SQL', () => {
    for (const protocol of ['postgres', 'redis'] as const) {
      const recorded: Recorded[] = [];
      governorOf(portsWith({}, recorded), protocol).recordDecided({ commandId: 'c-1', command: 'GET k', commandBytes: 9_000 }, allow);
      expect(recorded).toEqual([
        {
          sessionId: 's-1',
          kind: 'command.decided',
          data: {
            commandId: 'c-1',
            resource: 'cache',
            protocol,
            command: 'GET k',
            action: 'read',
            risk: 'low',
            decision: 'allow',
            rule: 'r',
            reason: 'because',
            ...(protocol === 'postgres' ? { tables: ['public.orders'] } : {}),
            truncated: true,
            commandBytes: 9_000,
          },
        },
      ]);
    }
  });

  it('records a refusal before any rule as the fail-closed denial', () => {
    const recorded: Recorded[] = [];
    const decision = governorOf(portsWith({}, recorded)).recordRefusedBeforeRule({ commandId: 'c-2', command: 'DEBUG SLEEP 0' }, 'never allowed');
    expect(decision).toEqual(failClosedDecision('never allowed'));
    expect(recorded[0]?.data).toMatchObject({ decision: 'deny', rule: '', reason: 'never allowed', action: 'admin', risk: 'critical' });
  });

  it('never records an unmasked command text: masking that fails shows the fallback', () => {
    const throwing = portsWith({
      masking: {
        masker: () => undefined,
        maskCommandText: () => {
          throw new Error('profiles not current');
        },
      },
    });
    expect(governorOf(portsWith({})).maskedCommand('SET ssn 123-45-6789', allow, 'SET')).toBe('SET ssn ***');
    expect(governorOf(throwing).maskedCommand('SET ssn 123-45-6789', allow, 'SET')).toBe('SET');
  });
});

describe('Governor.maskerFor', () => {
  const masker = { name: 'pii' } as ProfileMasker;

  it('picks the profile of an allowed command and of a granted approval, none for a denial', () => {
    const profiles: (string | undefined)[] = [];
    const ports = portsWith({ masking: { masker: (profile) => (profiles.push(profile), profile ? masker : undefined), maskCommandText: (text) => text } });
    expect(governorOf(ports).maskerFor(allow)).toEqual({ ok: true, masker });
    expect(governorOf(ports).maskerFor(approve)).toEqual({ ok: true, masker });
    expect(governorOf(ports).maskerFor(deny)).toEqual({ ok: true, masker: undefined });
    expect(profiles).toEqual(['pii', 'pii', undefined]);
  });

  it('refuses (ERR_MASKING_UNAVAILABLE) when the masking port cannot answer', () => {
    const ports = portsWith({
      masking: {
        masker: () => {
          throw new Error('stale');
        },
        maskCommandText: (text) => text,
      },
    });
    expect(governorOf(ports).maskerFor(allow)).toEqual({ ok: false, code: SluiceErrorCode.MaskingUnavailable });
  });
});

describe('Governor.hold', () => {
  const hold = (approvals: ApprovalPort, signal = new AbortController().signal) =>
    governorOf(portsWith({ approvals })).hold({ commandId: 'c-3', command: 'DEL k', commandHash: 'h', decision: approve }, signal);
  const approvalsAnswering = (outcome: ApprovalOutcome, consumed = true): ApprovalPort => ({
    request: async () => ({ approvalId: 'a-9', expiresAt: new Date(0) }),
    awaitDecision: async () => outcome,
    consume: async () => consumed,
  });

  it('grants once the approval is decided and used', async () => {
    await expect(hold(approvalsAnswering({ outcome: 'granted', approvers: ['dba-1'], reason: '' }))).resolves.toEqual({ granted: true, approvalId: 'a-9' });
  });

  it('refuses a denial, an expiry and a grant used elsewhere, with their codes', async () => {
    await expect(hold(approvalsAnswering({ outcome: 'denied', approvers: ['dba-1'], reason: 'no' }))).resolves.toMatchObject({
      granted: false,
      outcome: 'denied',
      code: SluiceErrorCode.ApprovalDenied,
      approvers: ['dba-1'],
    });
    await expect(hold(approvalsAnswering({ outcome: 'expired', approvers: [], reason: '' }))).resolves.toMatchObject({ outcome: 'expired', code: SluiceErrorCode.ApprovalExpired });
    await expect(hold(approvalsAnswering({ outcome: 'granted', approvers: [], reason: '' }, false))).resolves.toMatchObject({ outcome: 'used', code: SluiceErrorCode.ApprovalDenied });
  });

  it('refuses (never throws) when the approval port fails: fail closed', async () => {
    const failing: ApprovalPort = { request: () => Promise.reject(new Error('down')), awaitDecision: () => Promise.reject(new Error('unused')), consume: async () => true };
    await expect(hold(failing)).resolves.toMatchObject({ granted: false, outcome: 'unavailable', code: SluiceErrorCode.ApprovalUnavailable, approvalId: undefined });
  });
});

describe('admitSession', () => {
  it('admits, refuses by policy, and refuses when the policy cannot answer', async () => {
    const policy = (answer: () => Promise<{ mayConnect: boolean; readOnly: boolean }>): PolicyPort => ({ describeSession: answer, decide: async () => deny });
    await expect(admitSession(policy(async () => ({ mayConnect: true, readOnly: true })), subject, 'cache')).resolves.toEqual({ admitted: true, readOnly: true });
    await expect(admitSession(policy(async () => ({ mayConnect: false, readOnly: true })), subject, 'cache')).resolves.toMatchObject({ admitted: false, code: SluiceErrorCode.PolicyDenied });
    await expect(admitSession(policy(() => Promise.reject(new Error('down'))), subject, 'cache')).resolves.toMatchObject({ admitted: false, code: SluiceErrorCode.PolicyUnavailable });
  });
});
