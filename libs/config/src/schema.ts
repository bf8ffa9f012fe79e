import { z } from 'zod';
import { ACTIONS, EFFECTS, RISKS } from '@sluice/contracts';
import { parseAddress } from './address.js';
import { parseDuration } from './duration.js';

const address = z
  .string({ error: 'expected host:port, e.g. 127.0.0.1:7000' })
  .refine((text) => parseAddress(text) !== undefined, { message: 'expected host:port, e.g. 127.0.0.1:7000' });

const port = z.number({ error: 'expected a port number (1-65535)' }).int({ error: 'expected a port number (1-65535)' }).min(1, { error: 'expected a port number (1-65535)' }).max(65535, { error: 'expected a port number (1-65535)' });

const duration = z
  .union([z.string(), z.number()])
  .refine((value) => parseDuration(value) !== undefined, { message: 'expected a duration such as 30s, 2m or 500ms' })
  .transform((value) => parseDuration(value)!);

const secret = z.union(
  [
    z.strictObject({ env: z.string().min(1), prefix: z.string().optional() }),
    z.strictObject({ file: z.string().min(1), prefix: z.string().optional() }),
  ],
  { error: 'expected a secret reference { env: NAME } or { file: PATH }, never a literal value' },
);

const url = (protocols: readonly string[]) =>
  z.string().refine(
    (text) => {
      try {
        return protocols.includes(new URL(text).protocol);
      } catch {
        return false;
      }
    },
    { message: `expected a URL (${protocols.join(' or ')})` },
  );

const stringList = z.array(z.string().min(1));
/** `issuer` beside groups/subs: the identity must also come from (one of) these identity.oidc issuers. */
const issuerMatcher = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional();

const oidcIssuer = z.strictObject({
  issuer: url(['http:', 'https:']),
  audience: z.union([z.string().min(1), stringList.min(1)]),
  groupsClaim: z.string().min(1).default('groups'),
  /** Where the JWKS lives when the issuer has no discovery document. */
  jwksUri: url(['http:', 'https:']).optional(),
  algorithms: stringList.optional(),
  clockTolerance: duration.default(30_000),
  /** Minimum time between two JWKS fetches; an unknown key id triggers one. */
  jwksCooldown: duration.default(5_000),
});

const tls = z.strictObject({ cert: secret, key: secret });
/** An HTTP API's own TLS (PEM certificate chain and key); set, that API serves HTTPS only. */
const apiTls = tls.optional();

/**
 * What one listener takes. Each refusal answers in the protocol's own form (PostgreSQL 54000 /
 * 53300, Redis -ERR, HTTP 413 / 429).
 */
/** The largest command a listener may be set to take: the policy service receives up to this. */
export const MAX_GOVERNED_MESSAGE_BYTES = 128 * 1024 * 1024;

export const DEFAULT_LIMITS = {
  // A statement is parsed whole (policy, lineage): 4 MiB of SQL takes up to a second or so.
  maxStatementBytes: 4 * 1024 * 1024,
  maxMessageBytes: 64 * 1024 * 1024,
  maxConnections: 1000,
  maxConnectionsPerSubject: 100,
} as const;

const limits = z
  .strictObject({
    /** Longest SQL text (PostgreSQL) decided and run. */
    maxStatementBytes: z.number().int().min(1).max(MAX_GOVERNED_MESSAGE_BYTES).default(DEFAULT_LIMITS.maxStatementBytes),
    /** Longest protocol message: PostgreSQL message, Redis command (all arguments), HTTP request body. */
    maxMessageBytes: z.number().int().min(1).max(MAX_GOVERNED_MESSAGE_BYTES).default(DEFAULT_LIMITS.maxMessageBytes),
    /** Open connections on this listener at once. */
    maxConnections: z.number().int().min(1).default(DEFAULT_LIMITS.maxConnections),
    /** Open sessions of one subject (token `sub`) on this listener at once. */
    maxConnectionsPerSubject: z.number().int().min(1).default(DEFAULT_LIMITS.maxConnectionsPerSubject),
  })
  // Optional: resources built in code (tests, tools) get DEFAULT_LIMITS through resourceLimits().
  .optional();

export type ResourceLimits = { readonly [K in keyof typeof DEFAULT_LIMITS]: number };

/** A resource's limits, the defaults filled in. */
export const resourceLimits = (resource: { readonly limits?: ResourceLimits | undefined }): ResourceLimits => resource.limits ?? DEFAULT_LIMITS;

export const AUDIT_WAITS = ['none', 'ack'] as const;

/**
 * `audit.wait` of a resource: `none` (events are gathered for a few milliseconds and published
 * without holding commands back; a proxy crash can lose its last gathering window) or `ack`
 * (each command is sent to the target only once the bus has acknowledged every event of its
 * session so far, its decision included; refused when that takes longer than 5 s).
 */
const resourceAudit = z
  .strictObject({
    wait: z
      .enum(AUDIT_WAITS, {
        error: 'expected none (commands never wait for their events) or ack (each command waits until the bus has acknowledged its events)',
      })
      .default('none'),
  })
  .optional();

const postgresResource = z.strictObject({
  name: z.string().min(1),
  type: z.literal('postgres'),
  listen: address,
  target: z.strictObject({
    host: z.string().min(1),
    port: port.default(5432),
    database: z.string().min(1),
    ssl: z.boolean().default(false),
  }),
  credentials: z.strictObject({ username: z.string().min(1), password: secret.optional() }),
  tls: tls.optional(),
  description: z.string().optional(),
  limits,
  audit: resourceAudit,
});

const redisResource = z.strictObject({
  name: z.string().min(1),
  type: z.literal('redis'),
  listen: address,
  target: z.strictObject({
    host: z.string().min(1),
    port: port.default(6379),
    db: z.number().int().min(0).default(0),
  }),
  credentials: z.strictObject({ username: z.string().min(1).optional(), password: secret.optional() }).default({}),
  description: z.string().optional(),
  limits,
  audit: resourceAudit,
});

const httpResource = z.strictObject({
  name: z.string().min(1),
  type: z.literal('http'),
  listen: address,
  target: z.strictObject({ url: url(['http:', 'https:']) }),
  credentials: z.strictObject({ headers: z.record(z.string(), secret).default({}) }).default({ headers: {} }),
  description: z.string().optional(),
  limits,
  audit: resourceAudit,
});

const resource = z.discriminatedUnion('type', [postgresResource, redisResource, httpResource], {
  error: 'expected type: postgres, redis or http',
});

export const DETECTOR_NAMES = ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'ipv4', 'ipv6', 'jwt', 'secret'] as const;
export const STRATEGIES = ['redact', 'partial', 'hash', 'null'] as const;

const columnRule = z.strictObject({
  /** A regular expression on the column name; a leading `(?i)` makes it case-insensitive. */
  match: z.string().min(1).optional(),
  /** `schema.table.column`, glob allowed. */
  column: z.string().min(1).optional(),
  strategy: z.enum(STRATEGIES).optional(),
});

const profile = z.strictObject({
  detectors: stringList.default([...DETECTOR_NAMES]),
  strategy: z.enum(STRATEGIES, { error: `expected one of ${STRATEGIES.join(', ')}` }).default('partial'),
  columns: z.array(columnRule).default([]),
});

const customDetector = z.strictObject({
  name: z.string().min(1),
  pattern: z.string().min(1),
  validator: z.enum(['luhn']).optional(),
  strategy: z.enum(STRATEGIES).optional(),
});

const masking = z.strictObject({
  /** Region for phone numbers written without an international prefix. */
  defaultRegion: z.string().length(2).default('US'),
  hashKey: secret.optional(),
  detectors: z.array(customDetector).default([]),
  profiles: z.record(z.string(), profile).default({}),
});

const rule = z.strictObject({
  name: z.string().min(1, { message: 'expected a non-empty rule name' }),
  description: z.string().optional(),
  effect: z.enum(EFFECTS, { error: `expected one of ${EFFECTS.join(', ')}` }),
  subjects: z
    .strictObject({
      groups: stringList.optional(),
      subs: stringList.optional(),
      sub: z.union([z.string().min(1), stringList]).optional(),
      issuer: issuerMatcher,
    })
    .optional(),
  resources: stringList.optional(),
  actions: z.array(z.enum(ACTIONS, { error: `expected one of ${ACTIONS.join(', ')}` })).optional(),
  risk: z.enum(RISKS, { error: `expected one of ${RISKS.join(', ')}` }).optional(),
  paths: stringList.optional(),
  methods: stringList.optional(),
  tables: stringList.optional(),
  keys: stringList.optional(),
  mask: z.string().min(1).optional(),
  approvers: z
    .strictObject({ groups: stringList.optional(), subs: stringList.optional(), issuer: issuerMatcher, minApprovals: z.number().int().min(1).default(1) })
    .optional(),
  timeout: duration.optional(),
});

const webhook = z.strictObject({ url: url(['http:', 'https:']), secret: secret.optional() });

const slack = z.strictObject({
  botToken: secret,
  channel: z.string().min(1),
  signingSecret: secret,
  /** Slack's Web API base; tests point it at a local server. */
  apiUrl: url(['http:', 'https:']).default('https://slack.com/api/'),
  /** Slack user id or email -> the approver's subject (`sub`) and groups. */
  users: z.record(z.string(), z.strictObject({ sub: z.string().min(1), groups: stringList.default([]), issuer: z.string().min(1).optional() })).default({}),
});

const exporter = z.strictObject({
  type: z.enum(['webhook', 'splunk', 'syslog', 'file']),
  format: z.enum(['ocsf', 'cloudevents', 'cef']).default('cloudevents'),
  url: z.string().optional(),
  path: z.string().optional(),
  host: z.string().optional(),
  port: port.optional(),
  token: secret.optional(),
  name: z.string().optional(),
  batchSize: z.number().int().min(1).default(100),
});

export const RECORDING_DEFAULTS = { maxRows: 100, maxBytes: 65536, maxRowBytes: 16384, maxCommandBytes: 16384, maxEventBytes: 262144 };

/**
 * What the audit trail keeps of each command: texts and results are cut to these before an event
 * is built (marked `truncated`, with the original size), and no event is ever larger than
 * maxEventBytes (checked at start against the bus's max_payload).
 */
const recording = z.strictObject({
  /** Result rows recorded per command. */
  maxRows: z.number().int().min(0).default(RECORDING_DEFAULTS.maxRows),
  /** Result bytes recorded per command, all rows together. */
  maxBytes: z.number().int().min(0).default(RECORDING_DEFAULTS.maxBytes),
  /** Bytes recorded of one result row; longer values are cut. */
  maxRowBytes: z.number().int().min(0).default(RECORDING_DEFAULTS.maxRowBytes),
  /** Bytes recorded of a command's text (SQL, Redis command, HTTP request line). */
  maxCommandBytes: z.number().int().min(64).default(RECORDING_DEFAULTS.maxCommandBytes),
  /** Bytes of one event's JSON at most; a larger one is published reduced. */
  maxEventBytes: z.number().int().min(4096).default(RECORDING_DEFAULTS.maxEventBytes),
});

/** One publishing service's Ed25519 key pair (PEM), as `sluice keys` writes them. */
const signerKeys = z.strictObject({ publicKey: secret, privateKey: secret.optional() });

const provenance = z.strictObject({
  signers: z
    .strictObject({ proxy: signerKeys.optional(), approval: signerKeys.optional(), policy: signerKeys.optional(), audit: signerKeys.optional() })
    .default({}),
});

/** How one service logs in to NATS: an nkey seed, or a user and password. */
const busCredential = z.union(
  [z.strictObject({ nkey: secret }), z.strictObject({ user: z.string().min(1), password: secret })],
  { error: 'expected { nkey: <secret seed> } or { user: NAME, password: <secret> }' },
);

const bus = z.strictObject({
  /** One NATS URL, or several comma-separated (the nodes of a cluster): clients reconnect to any. */
  url: z
    .string()
    .min(1)
    .refine((value) => value.split(',').every((entry) => /^\S+$/.test(entry)), {
      message: 'expected a NATS URL or a comma-separated list of them, without spaces (nats://n1:4222,nats://n2:4222)',
    })
    .default('nats://127.0.0.1:4222'),
  /** Stream and subject prefix; change them only to run several deployments on one NATS. */
  stream: z.string().regex(/^[A-Za-z0-9_-]+$/).default('SLUICE_EVENTS'),
  subjectPrefix: z.string().regex(/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/).default('sluice.events'),
  /** Each service's own NATS login; a service without one connects anonymously. */
  credentials: z
    .strictObject({ proxy: busCredential.optional(), approval: busCredential.optional(), policy: busCredential.optional(), audit: busCredential.optional() })
    .default({}),
  /** TLS to NATS: the CA to trust, and a client certificate when the server asks for one. */
  tls: z.strictObject({ ca: secret.optional(), cert: secret.optional(), key: secret.optional() }).optional(),
});

const serviceAddress = (grpc: string) => z.strictObject({ grpc: address.default(grpc) }).default({ grpc });

/**
 * Mutual TLS between the proxy and the gRPC services (policy, masking, approval): the CA that
 * signs this deployment's certificates, a default certificate pair, and a pair per peer. Absent:
 * the per-deployment CA and certificates `sluice up` generates under its keys folder.
 */
const grpcTlsPair = z.strictObject({ cert: secret, key: secret });
const grpcTls = z.strictObject({
  ca: secret,
  cert: secret.optional(),
  key: secret.optional(),
  peers: z
    .strictObject({ proxy: grpcTlsPair.optional(), policy: grpcTlsPair.optional(), masking: grpcTlsPair.optional(), approval: grpcTlsPair.optional(), operator: grpcTlsPair.optional() })
    .default({}),
});

/** The audit service's niceness when services.audit.niceness is absent. */
export const DEFAULT_AUDIT_NICENESS = -5;

const services = z
  .strictObject({
    tls: grpcTls.optional(),
    proxy: z.strictObject({}).default({}),
    policy: serviceAddress('127.0.0.1:7101'),
    masking: serviceAddress('127.0.0.1:7102'),
    approval: z
      .strictObject({
        grpc: address.default('127.0.0.1:7103'),
        http: address.default('127.0.0.1:7180'),
        publicUrl: url(['http:', 'https:']).optional(),
        timeout: duration.default(120_000),
        tls: apiTls,
      })
      .default({ grpc: '127.0.0.1:7103', http: '127.0.0.1:7180', timeout: 120_000 }),
    audit: z
      .strictObject({
        http: address.default('127.0.0.1:7190'),
        tls: apiTls,
        /**
         * The scheduling niceness `sluice up` gives the audit service (-20 to 19, lower runs
         * first). On a saturated machine the data path then waits, not the audit trail: the
         * audit service is one process among the client's, the target's and the proxy's, and at
         * an equal share it ends a long load seconds behind. Absent: DEFAULT_AUDIT_NICENESS when
         * the machine allows it. Lowering it needs CAP_SYS_NICE (root); without that the service
         * runs at the normal priority, and the supervisor warns when the niceness was configured.
         */
        niceness: z.number().int().min(-20).max(19).optional(),
      })
      .default({ http: '127.0.0.1:7190' }),
    /**
     * The web console; absent: not started. People sign in with the authorization code flow
     * (PKCE) at `oidc.issuer` (default: the first of identity.oidc); the access token they get
     * must be one that issuer's identity.oidc entry accepts (its audience), since the console
     * acts with it on the approval and audit APIs.
     */
    console: z
      .strictObject({
        http: address.default('127.0.0.1:7200'),
        /** Where browsers reach it; the redirect URI is `<publicUrl>/callback`. https (or tls) makes the cookie Secure. */
        publicUrl: url(['http:', 'https:']).optional(),
        tls: apiTls,
        oidc: z.strictObject({
          issuer: z.string().min(1).optional(),
          clientId: z.string().min(1),
          /** Absent: a public client (PKCE only). */
          clientSecret: secret.optional(),
          scope: z.string().min(1).default('openid'),
          /** RFC 8707 resource indicator sent with the code flow, for issuers that need one to mint a JWT for the audience. */
          resource: z.string().min(1).optional(),
        }),
      })
      .optional(),
  })
  // prefault, not default: a missing `services` is parsed as {} so every service gets its default address.
  .prefault({});

export const configSchema = z.strictObject({
  admin: z.strictObject({ listen: address.default('127.0.0.1:7000') }).default({ listen: '127.0.0.1:7000' }),
  bus: bus.default({ url: 'nats://127.0.0.1:4222', stream: 'SLUICE_EVENTS', subjectPrefix: 'sluice.events', credentials: {} }),
  eventStore: z
    .strictObject({ url: url(['postgres:', 'postgresql:']).optional(), path: z.string().optional() })
    .default({}),
  identity: z.strictObject({ oidc: z.array(oidcIssuer).default([]) }).default({ oidc: [] }),
  services,
  resources: z.array(resource).default([]),
  masking: masking.default({ defaultRegion: 'US', detectors: [], profiles: {} }),
  approval: z
    .strictObject({ webhooks: z.array(webhook).default([]), slack: slack.optional() })
    .default({ webhooks: [] }),
  audit: z
    .strictObject({
      /**
       * Who may read the audit API (sessions, events, verify). Absent or empty: nobody; the
       * trail holds every agent's commands and the data they saw, so it fails closed.
       */
      readers: z.strictObject({ groups: stringList.default([]), subs: stringList.default([]), issuer: issuerMatcher }).default({ groups: [], subs: [] }),
      exporters: z.array(exporter).default([]),
      recording: recording.default(RECORDING_DEFAULTS),
      stream: z
        .strictObject({
          maxAge: duration.optional(),
          duplicateWindow: duration.default(120_000),
          /** Copies of the stream on a NATS cluster (3: losing one node loses nothing); 1 on a single server. */
          replicas: z.number().int().min(1).max(5).default(1),
        })
        .default({ duplicateWindow: 120_000, replicas: 1 }),
    })
    .default({ readers: { groups: [], subs: [] }, exporters: [], recording: RECORDING_DEFAULTS, stream: { duplicateWindow: 120_000, replicas: 1 } }),
  rules: z.array(rule).default([]),
  /**
   * Keys that sign every message on the bus. Absent: `sluice up` makes per-deployment keys under
   * ./.sluice/keys (SLUICE_KEYS_DIR); a service started alone without any publishes unsigned.
   */
  provenance: provenance.optional(),
});

export type SluiceConfig = z.output<typeof configSchema>;
export type ResourceConfig = SluiceConfig['resources'][number];
export type PostgresResourceConfig = Extract<ResourceConfig, { type: 'postgres' }>;
export type RedisResourceConfig = Extract<ResourceConfig, { type: 'redis' }>;
export type HttpResourceConfig = Extract<ResourceConfig, { type: 'http' }>;
export type RuleConfig = SluiceConfig['rules'][number];
export type MaskingConfig = SluiceConfig['masking'];
export type MaskingProfileConfig = MaskingConfig['profiles'][string];
export type OidcIssuerConfig = SluiceConfig['identity']['oidc'][number];
export type ExporterConfig = SluiceConfig['audit']['exporters'][number];
export type AuditReadersConfig = SluiceConfig['audit']['readers'];
export type ApiTlsConfig = NonNullable<SluiceConfig['services']['audit']['tls']>;
/** Where a client reaches an HTTP API of this deployment (approval, audit): https when it has tls. */
export const apiBaseUrl = (api: { readonly http: string; readonly tls?: ApiTlsConfig | undefined }): string => `${api.tls === undefined ? 'http' : 'https'}://${api.http}`;
export type ConsoleConfig = NonNullable<SluiceConfig['services']['console']>;
