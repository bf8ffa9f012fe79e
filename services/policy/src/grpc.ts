import { type ServerWritableStream, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { policy as pb } from '@sluice/proto';
import { withholdsServerTexts, type Action, type Effect, type GovernedCommand, type Risk } from '@sluice/contracts';
import { invalidArgument, toGrpcError, type Logger } from '@sluice/service-runtime';
import { targetCatalogFacts, type TargetCatalogFacts } from '@sluice/sql-classifier';
import type { Policy, PolicyDecision, PolicySubject } from '@sluice/policy-engine';

/** What the adapter needs from the running service. */
export interface PolicyServiceState {
  readonly policy: Policy;
  readonly version: number;
  reload(): Promise<{ readonly ok: true } | { readonly ok: false; readonly error: string }>;
  watch(stream: ServerWritableStream<pb.WatchPolicyRequest, pb.WatchPolicyResponse>): void;
  /** Where internal errors go; peers get a code and a fixed text. */
  readonly logger: Logger;
}

export const EFFECT_TO_PROTO: Readonly<Record<Effect, pb.Effect>> = {
  allow: pb.Effect.EFFECT_ALLOW,
  deny: pb.Effect.EFFECT_DENY,
  approve: pb.Effect.EFFECT_APPROVE,
};
export const ACTION_TO_PROTO: Readonly<Record<Action, pb.Action>> = {
  read: pb.Action.ACTION_READ,
  write: pb.Action.ACTION_WRITE,
  ddl: pb.Action.ACTION_DDL,
  admin: pb.Action.ACTION_ADMIN,
};
export const RISK_TO_PROTO: Readonly<Record<Risk, pb.Risk>> = {
  low: pb.Risk.RISK_LOW,
  medium: pb.Risk.RISK_MEDIUM,
  high: pb.Risk.RISK_HIGH,
  critical: pb.Risk.RISK_CRITICAL,
};

const subjectOf = (subject: pb.Subject | undefined): PolicySubject => ({ sub: subject?.sub ?? '', groups: subject?.groups ?? [], ...(subject?.issuer ? { issuer: subject.issuer } : {}) });

/** Facts by version, so a resource's facts are built once, not per decision (a few resources, rarely changed). */
const factsByVersion = new Map<string, TargetCatalogFacts>();
const MAX_FACT_VERSIONS = 64;

const catalogOf = (catalog: pb.TargetCatalog): TargetCatalogFacts => {
  // A version names the facts only as the proxy computed it: an empty one is never shared.
  let facts = catalog.version ? factsByVersion.get(catalog.version) : undefined;
  if (!facts) {
    facts = targetCatalogFacts({
      rowFunctions: catalog.rowFunctions,
      overloadedBuiltins: catalog.overloadedBuiltins,
      rewritingRelations: catalog.rewritingRelations,
      inheritance: catalog.inheritance.map((edge) => [edge.child, edge.parent] as const),
      foreignKeyActions: catalog.foreignKeyActions.map((key) => [key.referencing, key.referenced] as const),
      version: catalog.version,
    });
    if (catalog.version) {
      if (factsByVersion.size >= MAX_FACT_VERSIONS) factsByVersion.clear();
      factsByVersion.set(catalog.version, facts);
    }
  }
  return catalog.uncommittedChanges ? { ...facts, uncommittedChanges: true } : facts;
};

const commandOf = (request: pb.DecideRequest): GovernedCommand | undefined => {
  if (request.sql) {
    const prepared = Object.entries(request.sql.preparedStatements);
    return {
      kind: 'sql',
      text: request.sql.text,
      ...(request.sql.searchPath.length > 0 ? { searchPath: request.sql.searchPath } : {}),
      ...(prepared.length > 0 ? { preparedStatements: new Map(prepared) } : {}),
      ...(request.sql.catalog ? { catalog: catalogOf(request.sql.catalog) } : {}),
    };
  }
  if (request.redis) return { kind: 'redis', args: request.redis.args };
  if (request.http) return { kind: 'http', method: request.http.method, path: request.http.path };
  return undefined;
};

export const decisionToProto = (decision: PolicyDecision, version: number): pb.DecideResponse => ({
  effect: EFFECT_TO_PROTO[decision.effect],
  rule: decision.rule,
  reason: decision.reason,
  action: ACTION_TO_PROTO[decision.action],
  risk: RISK_TO_PROTO[decision.risk],
  maskProfile: decision.effect === 'deny' ? '' : (decision.maskProfile ?? ''),
  cacheable: decision.cacheable,
  tables: [...decision.tables],
  approvers:
    decision.effect === 'approve'
      ? {
          groups: [...decision.approvers.groups],
          subs: [...decision.approvers.subs],
          issuers: [...(decision.approvers.issuers ?? [])],
          minApprovals: decision.approvers.minApprovals,
        }
      : undefined,
  approvalTimeoutMs: decision.effect === 'approve' ? decision.approvalTimeoutMs : 0,
  policyVersion: BigInt(version),
  prepares: [...decision.prepares],
  redisByShape: decision.redisKeyGlobs !== undefined,
  redisKeyGlobs: [...(decision.redisKeyGlobs ?? [])],
  withholdServerTexts: withholdsServerTexts(decision),
});

const internal = (callback: sendUnaryData<never>, error: unknown, logger: Logger): void => callback(toGrpcError(error, { logger, during: 'policy call' }));

/** PolicyService handlers: proto <-> domain translation only. */
export const policyServiceHandlers = (state: PolicyServiceState): pb.PolicyServiceServer => ({
  decide(call: ServerUnaryCall<pb.DecideRequest, pb.DecideResponse>, callback: sendUnaryData<pb.DecideResponse>) {
    const command = commandOf(call.request);
    if (!command) {
      callback(invalidArgument('one of sql, redis or http is required'));
      return;
    }
    try {
      // Read the version before deciding: a reload in between makes the proxy drop, not keep, it.
      const version = state.version;
      callback(null, decisionToProto(state.policy.decide(subjectOf(call.request.subject), call.request.resource, command), version));
    } catch (error) {
      internal(callback, error, state.logger);
    }
  },
  describeSession(call, callback) {
    try {
      const version = state.version;
      const session = state.policy.describeSession(subjectOf(call.request.subject), call.request.resource);
      callback(null, { mayConnect: session.mayConnect, readOnly: session.readOnly, policyVersion: BigInt(version) });
    } catch (error) {
      internal(callback, error, state.logger);
    }
  },
  watchPolicy(call) {
    state.watch(call);
  },
  reload(_call, callback) {
    state.reload().then(
      (result) => callback(null, { ok: result.ok, error: result.ok ? '' : result.error, policyVersion: BigInt(state.version) }),
      (error: unknown) => internal(callback, error, state.logger),
    );
  },
});
