import { credentials, Metadata, type ChannelCredentials, type ChannelOptions, type ClientReadableStream } from '@grpc/grpc-js';
import { policy as pb } from '@sluice/proto';
import { DependencyUnavailableError, SluiceErrorCode, type Action, type Effect, type Risk, type Subject } from '@sluice/contracts';
import { compileGlob, redisShape } from '@sluice/policy-engine';
import { isSqlClassifierLoaded, loadSqlClassifier, normalizeSql, searchPathKey, type TargetCatalogFacts } from '@sluice/sql-classifier';
import { Backoff } from '@sluice/service-runtime';
import type { Logger } from '@sluice/telemetry';
import type { Decision, GovernedCommand, PolicyPort, SessionPolicy } from '../ports.js';
import { LruCache } from './lru-cache.js';

export interface PolicyPortOptions {
  readonly logger: Logger;
  /** Cached decisions at most (least recently used go first). */
  readonly cacheSize?: number;
  /** Deadline of one Decide/DescribeSession call; a large command gets more (see DEADLINE_BYTES_PER_MS). */
  readonly timeoutMs?: number;
  /** How the channel authenticates (the deployment's mutual TLS); plain text when absent. */
  readonly credentials?: ChannelCredentials;
  /** Channel options that go with those credentials (grpcClientChannelOptions). */
  readonly channelOptions?: ChannelOptions;
}

export interface PolicyPortStats {
  readonly hits: number;
  readonly misses: number;
  readonly size: number;
  /** The policy version the cache belongs to; undefined while not watching (nothing is cached). */
  readonly version: number | undefined;
}

const EFFECTS: ReadonlyMap<pb.Effect, Effect> = new Map([
  [pb.Effect.EFFECT_ALLOW, 'allow'],
  [pb.Effect.EFFECT_DENY, 'deny'],
  [pb.Effect.EFFECT_APPROVE, 'approve'],
]);
const ACTIONS: ReadonlyMap<pb.Action, Action> = new Map([
  [pb.Action.ACTION_READ, 'read'],
  [pb.Action.ACTION_WRITE, 'write'],
  [pb.Action.ACTION_DDL, 'ddl'],
  [pb.Action.ACTION_ADMIN, 'admin'],
]);
const RISKS: ReadonlyMap<pb.Risk, Risk> = new Map([
  [pb.Risk.RISK_LOW, 'low'],
  [pb.Risk.RISK_MEDIUM, 'medium'],
  [pb.Risk.RISK_HIGH, 'high'],
  [pb.Risk.RISK_CRITICAL, 'critical'],
]);

/** Unknown enum values read as the strictest: a newer service must not loosen an older proxy. */
export const decisionFromProto = (response: pb.DecideResponse): Decision => {
  const basis = {
    rule: response.rule,
    reason: response.reason,
    action: ACTIONS.get(response.action) ?? 'admin',
    risk: RISKS.get(response.risk) ?? 'critical',
    tables: Object.freeze([...response.tables]),
    prepares: Object.freeze([...response.prepares]),
  };
  const effect = EFFECTS.get(response.effect) ?? 'deny';
  const withheld = response.withholdServerTexts ? { withholdServerTexts: true } : {};
  switch (effect) {
    case 'allow':
      return Object.freeze({ ...basis, effect, maskProfile: response.maskProfile || undefined, ...withheld });
    case 'approve':
      return Object.freeze({
        ...basis,
        effect,
        approvers: {
          groups: [...(response.approvers?.groups ?? [])],
          subs: [...(response.approvers?.subs ?? [])],
          issuers: [...(response.approvers?.issuers ?? [])],
          minApprovals: response.approvers?.minApprovals || 1,
        },
        approvalTimeoutMs: response.approvalTimeoutMs,
        maskProfile: response.maskProfile || undefined,
        ...withheld,
      });
    case 'deny':
      return Object.freeze({ ...basis, effect });
  }
};

const SEP = '\u0001';
/** Redis commands longer than this are not cached: their values make them unique anyway. */
const MAX_REDIS_KEY_BYTES = 1024;
/**
 * Redis commands naming more keys than this are not kept by shape: every glob is tested on every
 * key, on the event loop every session shares (a 64 MiB DEL of three million keys would hold it
 * for seconds); the policy service decides them as it did before shapes.
 */
const MAX_SHAPE_KEYS = 256;
/**
 * SQL texts longer than this are neither cached nor normalised here: 10,000 cached multi-megabyte
 * statements would fill the proxy's memory, and normalising one holds every session meanwhile.
 */
const MAX_SQL_KEY_CHARS = 64 * 1024;
const BACKOFF_MIN_MS = 100;

/**
 * The catalog facts a SQL decision was made with: a new function, view, rule or partition changes
 * the version, so a decision cached before it is not reused after it.
 */
const catalogKey = (catalog: TargetCatalogFacts | undefined): string =>
  catalog === undefined ? `-${SEP}` : `${catalog.version}${catalog.uncommittedChanges ? '!' : ''}${SEP}`;

/** The facts as sent; one conversion per facts object (a resource's facts change rarely). */
const catalogToProto = (catalog: TargetCatalogFacts): pb.TargetCatalog => {
  let message = sentCatalogs.get(catalog);
  if (!message) {
    message = {
      rowFunctions: [...catalog.rowFunctions],
      overloadedBuiltins: [...catalog.overloadedBuiltins],
      rewritingRelations: [...catalog.rewritingRelations],
      inheritance: [...catalog.parents].flatMap(([child, parents]) => parents.map((parent) => ({ child, parent }))),
      foreignKeyActions: [...(catalog.foreignKeyDependents ?? [])].flatMap(([referenced, referencing]) => referencing.map((table) => ({ referencing: table, referenced }))),
      version: catalog.version,
      uncommittedChanges: catalog.uncommittedChanges === true,
    };
    sentCatalogs.set(catalog, message);
  }
  return message;
};
const sentCatalogs = new WeakMap<TargetCatalogFacts, pb.TargetCatalog>();
const BACKOFF_MAX_MS = 5_000;
/**
 * A command is sent whole to be decided (up to limits.maxStatementBytes / maxMessageBytes): its
 * deadline grows by a millisecond per this many bytes (2 MB/s, a quarter of the slowest rate
 * measured: 50 MB of SQL decided in 6.5 s on a machine at load 10), so that a large statement or
 * Redis value is decided rather than refused as "policy unavailable" while still in flight.
 */
const DEADLINE_BYTES_PER_MS = 2_000;

const bytesToDecide = (command: GovernedCommand): number => {
  switch (command.kind) {
    case 'sql': {
      let bytes = command.text.length;
      for (const text of command.preparedStatements?.values() ?? []) bytes += text.length;
      return bytes;
    }
    case 'redis': {
      let bytes = 0;
      for (const arg of command.args) bytes += arg.length;
      return bytes;
    }
    case 'http':
      return command.path.length;
  }
};

/**
 * The proxy's PolicyPort over gRPC. Decisions are cached per (sub, groups, resource, command)
 * and, for SQL, also per normalized text when the service says the decision does not depend on
 * constants. The cache lives only while WatchPolicy is connected and belongs to the version it
 * reports: a new version or a broken stream empties it. Unavailable service: the call throws
 * DependencyUnavailableError and the adapter denies (fail closed).
 */
export const createPolicyPort = (address: string, options: PolicyPortOptions): Required<PolicyPort> & { readonly ready: Promise<void>; close(): void; stats(): PolicyPortStats } => {
  const { logger } = options;
  const timeoutMs = options.timeoutMs ?? 2_000;
  const client = new pb.PolicyServiceClient(address, options.credentials ?? credentials.createInsecure(), {
    ...options.channelOptions,
    // A restarted policy service is reached again within a second, not after minutes of backoff.
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 1_000,
    'grpc.keepalive_time_ms': 15_000,
    'grpc.keepalive_timeout_ms': 5_000,
  });
  const decisions = new LruCache<Decision>(options.cacheSize ?? 10_000);
  /**
   * Per resource, the rules' key globs the service said its Redis decisions depend on (for the
   * version watched): a command's shape key is built with them (redisShapeKey).
   */
  const keyGlobs = new Map<string, { readonly text: string; readonly globs: readonly RegExp[] }>();
  const sessions = new LruCache<SessionPolicy>(1_000);
  const principals = new WeakMap<Subject, string>();
  let version: number | undefined;
  let watch: ClientReadableStream<pb.WatchPolicyResponse> | undefined;
  const backoff = new Backoff({ initialMs: BACKOFF_MIN_MS, maxMs: BACKOFF_MAX_MS });
  let retry: NodeJS.Timeout | undefined;
  let closed = false;
  let hits = 0;
  let misses = 0;
  let markReady: () => void = () => {};
  /** Resolves when the first policy version has arrived (decisions can be cached from then on). */
  const ready = new Promise<void>((resolve) => (markReady = resolve));

  // The proxy may not have loaded the parser; until it has, SQL is cached by exact text only.
  loadSqlClassifier().catch((error: unknown) => logger.warn({ err: error }, 'SQL normalizer unavailable; caching by exact text only'));

  const invalidate = (): void => {
    decisions.clear();
    sessions.clear();
    keyGlobs.clear();
  };

  const startWatch = (): void => {
    if (closed) return;
    const call = client.watchPolicy({});
    watch = call;
    const broken = (why: string): void => {
      if (watch !== call) return;
      watch = undefined;
      version = undefined;
      invalidate();
      if (closed) return;
      const delay = backoff.next();
      logger.warn({ why, retryInMs: delay }, 'policy watch lost; decisions are not cached until it is back');
      retry = setTimeout(startWatch, delay);
      retry.unref();
    };
    call.on('data', (message: pb.WatchPolicyResponse) => {
      const next = Number(message.policyVersion);
      if (next !== version) {
        invalidate();
        if (version !== undefined) logger.info({ from: version, to: next }, 'policy changed; decision cache cleared');
        version = next;
      }
      backoff.reset();
      markReady();
    });
    call.on('error', (error: Error) => broken(error.message));
    call.on('end', () => broken('stream ended'));
  };
  startWatch();

  const principalOf = (subject: Subject): string => {
    let key = principals.get(subject);
    if (key === undefined) {
      // The issuer too: a rule may name one, and another issuer may mint the same sub and groups.
      // JSON, not a separator: a sub or group may hold any character, separators included, and
      // ("a", ["b\u0002c"]) must never share a key with ("a", ["b", "c"]). JSON escapes control
      // characters, so SEP after it still ends the principal.
      key = JSON.stringify([subject.issuer, subject.sub, [...subject.groups].sort()]);
      principals.set(subject, key);
    }
    return key;
  };

  const commandKey = (command: GovernedCommand): string | undefined => {
    switch (command.kind) {
      case 'sql':
        if (command.text.length > MAX_SQL_KEY_CHARS) return undefined;
        return `s${catalogKey(command.catalog)}${searchPathKey(command.searchPath)}${SEP}${command.text}`;
      case 'redis': {
        let bytes = 0;
        for (const arg of command.args) bytes += arg.length + 1;
        if (bytes > MAX_REDIS_KEY_BYTES) return undefined;
        // Each argument after its length: joined by a separator, `MGET a b` and `MGET a<sep>b` (one
        // key that an allow rule's glob may match) would be one entry.
        let key = 'r';
        for (const arg of command.args) key += `${arg.length}:${arg.toString('latin1')}`;
        return key;
      }
      case 'http':
        return `h${command.method}${SEP}${command.path}`;
    }
  };

  const unavailable = (error: unknown): DependencyUnavailableError =>
    new DependencyUnavailableError(SluiceErrorCode.PolicyUnavailable, `policy service unavailable: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });

  // waitForReady: a call made while the channel reconnects (the service restarting, or starting
  // after the proxy) waits for it up to the deadline instead of failing at once; a service still
  // down at the deadline is a refusal (fail closed).
  const deadline = (bytes = 0): { deadline: Date; waitForReady: boolean } => ({
    deadline: new Date(Date.now() + timeoutMs + Math.floor(bytes / DEADLINE_BYTES_PER_MS)),
    waitForReady: true,
  });

  const toRequest = (subject: Subject, resource: string, command: GovernedCommand): pb.DecideRequest => {
    const base = { subject: { sub: subject.sub, groups: [...subject.groups], issuer: subject.issuer }, resource };
    switch (command.kind) {
      case 'sql':
        return {
          ...base,
          sql: {
            text: command.text,
            searchPath: [...(command.searchPath ?? [])],
            preparedStatements: command.preparedStatements ? Object.fromEntries(command.preparedStatements) : {},
            ...(command.catalog ? { catalog: catalogToProto(command.catalog) } : {}),
          },
        };
      case 'redis':
        return { ...base, redis: { args: command.args.map((arg) => Buffer.from(arg)) } };
      case 'http':
        return { ...base, http: { method: command.method, path: command.path } };
    }
  };

  /** The exact-text key of a command, or undefined when it is not cached (too large, or not watching). */
  const exactKey = (subject: Subject, resource: string, command: GovernedCommand): string | undefined => {
    const commandPart = commandKey(command);
    return commandPart === undefined ? undefined : `${principalOf(subject)}${SEP}${resource}${SEP}${commandPart}`;
  };

  /**
   * A Redis command's shape key: its shape (name, subcommand, argument count) and, for each key,
   * which of the resource's key globs it matches. The service decides such a command the same for
   * every key that matches the same globs, so a key on the other side of any glob gets another key
   * (and its own decision). Undefined when the command has no shape or the globs are not known yet.
   */
  const redisShapeKey = (principal: string, resource: string, args: readonly (Buffer | string)[]): string | undefined => {
    const globs = keyGlobs.get(resource);
    if (!globs) return undefined;
    const shape = redisShape(args);
    if (!shape || shape.keys.length > MAX_SHAPE_KEYS) return undefined;
    let matches = '';
    for (const key of shape.keys) {
      matches += SEP;
      for (const glob of globs.globs) matches += glob.test(key) ? '1' : '0';
    }
    return `${principal}${SEP}${resource}${SEP}k${globs.text}${SEP}${shape.shape}${matches}`;
  };

  /**
   * The normalised-text key last built, kept while statements of one shape follow each other (an
   * agent paging by id, pgbench -S): every part of it is compared, and the same string comes
   * back, so the cache finds it by the hash kept with it instead of a new copy of the text to
   * join, flatten and hash on every statement.
   */
  let lastShape: { readonly principal: string; readonly resource: string; readonly context: string; readonly normalized: string; readonly key: string } | undefined;

  const shapeKeyOf = (principal: string, resource: string, command: Extract<GovernedCommand, { kind: 'sql' }>, normalized: string): string => {
    const context = `${catalogKey(command.catalog)}${searchPathKey(command.searchPath)}`;
    const last = lastShape;
    if (last !== undefined && last.normalized === normalized && last.context === context && last.principal === principal && last.resource === resource) return last.key;
    const key = `${principal}${SEP}${resource}${SEP}n${context}${SEP}${normalized}`;
    lastShape = { principal, resource, context, normalized, key };
    return key;
  };

  /**
   * The cached decision of a command: (SQL) by its normalised text, which a decision the service
   * called constant-independent (`cacheable`: it depends on the statement's fingerprint only) was
   * kept under, else by its exact text (kept under both at once, from the same cacheable answer),
   * or (Redis) by its shape key. `keys` receives the keys a decision fetched now should be kept under.
   * The normalised text is asked first: under a new literal in every statement the exact text
   * never comes again, and building its key cost a copy and a hash of the whole text each time.
   */
  const lookup = (subject: Subject, resource: string, command: GovernedCommand, keys?: { exact?: string; normalized?: string }): Decision | undefined => {
    if (version === undefined) return undefined;
    if (command.kind === 'sql' && command.text.length <= MAX_SQL_KEY_CHARS && isSqlClassifierLoaded()) {
      const normalized = normalizeSql(command.text);
      if (normalized !== undefined && normalized !== command.text) {
        const normalizedKey = shapeKeyOf(principalOf(subject), resource, command, normalized);
        if (keys) keys.normalized = normalizedKey;
        const sameShape = decisions.get(normalizedKey);
        if (sameShape) {
          hits += 1;
          // Not kept under the exact text too: under a new literal in every statement that text never
          // comes again, and each would push a decision of another shape out of the cache.
          return sameShape;
        }
      }
    }
    const key = exactKey(subject, resource, command);
    if (keys && key !== undefined) keys.exact = key;
    const hit = key === undefined ? undefined : decisions.get(key);
    if (hit) {
      hits += 1;
      return hit;
    }
    // A Redis command too large for an exact key (a large value) still has a shape.
    if (command.kind !== 'redis') return undefined;
    const shapeKey = redisShapeKey(principalOf(subject), resource, command.args);
    const sameShape = shapeKey === undefined ? undefined : decisions.get(shapeKey);
    if (!sameShape) return undefined;
    hits += 1;
    // Not kept under the exact arguments too: every new key would push out another decision.
    return sameShape;
  };

  return {
    ready,
    // A new literal in every statement is answered here too (by the normalised text): the
    // session needs no promise, no span and no turn of the event loop for it.
    cachedDecision: (subject, resource, command) => lookup(subject, resource, command),
    async decide(subject, resource, command) {
      const watched = version;
      const keys: { exact?: string; normalized?: string } = {};
      const hit = lookup(subject, resource, command, keys);
      if (hit) return hit;
      const key = watched === undefined ? undefined : keys.exact;
      const normalizedKey = watched === undefined ? undefined : keys.normalized;
      misses += 1;
      const response = await new Promise<pb.DecideResponse>((resolve, reject) => {
        client.decide(toRequest(subject, resource, command), new Metadata(), deadline(bytesToDecide(command)), (error, answer) =>
          error ? reject(unavailable(error)) : resolve(answer),
        );
      });
      const decision = decisionFromProto(response);
      // Only a decision of the version we watch may be kept: one made before a reload may not.
      if (response.cacheable && watched !== undefined && version === watched && Number(response.policyVersion) === version) {
        if (key !== undefined) decisions.set(key, decision);
        if (normalizedKey !== undefined) decisions.set(normalizedKey, decision);
        if (command.kind === 'redis' && response.redisByShape) {
          const text = response.redisKeyGlobs.join('\u0002');
          // The globs come with every decision of the version: the resource's are the same each time.
          if (keyGlobs.get(resource)?.text !== text) keyGlobs.set(resource, { text, globs: response.redisKeyGlobs.map(compileGlob) });
          const shapeKey = redisShapeKey(principalOf(subject), resource, command.args);
          if (shapeKey !== undefined) decisions.set(shapeKey, decision);
        }
      }
      return decision;
    },

    async describeSession(subject, resource) {
      const key = `${principalOf(subject)}${SEP}${resource}`;
      if (version !== undefined) {
        const hit = sessions.get(key);
        if (hit) return hit;
      }
      const response = await new Promise<pb.DescribeSessionResponse>((resolve, reject) => {
        client.describeSession(
          { subject: { sub: subject.sub, groups: [...subject.groups], issuer: subject.issuer }, resource },
          new Metadata(),
          deadline(),
          (error, answer) => (error ? reject(unavailable(error)) : resolve(answer)),
        );
      });
      const session: SessionPolicy = Object.freeze({ mayConnect: response.mayConnect, readOnly: response.readOnly });
      if (version !== undefined && Number(response.policyVersion) === version) sessions.set(key, session);
      return session;
    },

    stats: () => ({ hits, misses, size: decisions.size, version }),

    close() {
      closed = true;
      clearTimeout(retry);
      const call = watch;
      watch = undefined;
      call?.cancel();
      invalidate();
      client.close();
    },
  };
};
