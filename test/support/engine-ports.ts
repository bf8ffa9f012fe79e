import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { expect } from 'vitest';
import type { ResourceConfig, RuleConfig } from '@sluice/config';
import { createTokenVerifier } from '@sluice/identity';
import { compileMasking, type CompiledMasking } from '@sluice/masking-engine';
import { createPolicy } from '@sluice/policy-engine';
import type { GovernancePorts, ProtocolAdapter } from '../../services/proxy/src/ports.js';
import type { TestIssuer } from './oidc.js';

/**
 * The proxy's ports wired to the real policy and masking engines in-process, for red-team specs
 * that drive one front door as an agent with a real token. No rule in those specs holds a
 * command for approval, so the approval port refuses to be used at all.
 */

/** One audit event as the adapter recorded it. */
export interface RecordedEvent {
  sessionId: string;
  type: string;
  data: Record<string, unknown>;
}

/** Profile `pii`: email, US SSN and card detectors, partial strategy, and a column rule redacting `ssn`. */
export const compilePiiMasking = (hashKey: string): CompiledMasking =>
  compileMasking(
    {
      defaultRegion: 'US',
      detectors: [],
      profiles: { pii: { detectors: ['email', 'us_ssn', 'credit_card'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } },
    },
    { hashKey },
  );

/** A value no detector recognises: only a column rule (field `ssn`) can mask it. */
export const UNDETECTABLE_SSN = 'ZQ-SSN-VALUE-77';

/** Fails the test when what the agent received shows UNDETECTABLE_SSN in clear. */
export const expectNoClearSsn = (reply: unknown) => expect(JSON.stringify(reply)).not.toContain(UNDETECTABLE_SSN);

export interface EnginePortsOptions {
  readonly idp: TestIssuer;
  readonly rules: RuleConfig[];
  readonly resource: ResourceConfig;
  readonly masking: CompiledMasking;
  /** The adapter's recording limit on returned data. */
  readonly maxRecordedBytes: number;
  /** Where audit events go, in order; without it they are dropped. */
  readonly recorded?: RecordedEvent[];
}

const noApprovals = async (): Promise<never> => {
  throw new Error('no approvals in this test');
};

export const createEnginePorts = ({ idp, rules, resource, masking, maxRecordedBytes, recorded }: EnginePortsOptions): GovernancePorts => {
  const verifier = createTokenVerifier([{ issuer: idp.issuer, audience: idp.audience, groupsClaim: 'groups', clockTolerance: 5_000 }]);
  const policy = createPolicy(rules, [resource], { approvalTimeoutMs: 60_000 });
  return {
    identity: { verify: (token) => verifier.verify(token) },
    policy: {
      describeSession: async (subject) => policy.describeSession(subject, resource.name),
      decide: async (subject, name, command) => policy.decide(subject, name, command),
    },
    masking: { masker: (profile) => (profile ? masking.profile(profile) : undefined), maskCommandText: (text) => text },
    approvals: { request: noApprovals, awaitDecision: noApprovals, consume: async () => false },
    audit: {
      record: (sessionId, type, data) => void recorded?.push({ sessionId, type, data: data as unknown as Record<string, unknown> }),
      healthy: true,
    },
    recording: { maxRows: 100, maxBytes: maxRecordedBytes },
    newId: randomUUID,
    now: () => new Date(),
  };
};

/** A loopback listener on port 0 that hands every connection to a protocol adapter. */
export const listenOnLoopback = async (adapter: Pick<ProtocolAdapter, 'handleConnection'>, ports: GovernancePorts): Promise<{ server: Server; port: number }> => {
  const server = createServer((socket) => void adapter.handleConnection(socket, ports));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
};
