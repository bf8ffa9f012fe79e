import type { PostgresResourceConfig } from '@sluice/config';
import type { ProtocolAdapter } from '../ports.js';
import { createSecureContext, type SecureContext } from 'node:tls';
import { readSecret, requireSecret, resourceLimits } from '@sluice/config';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { CancelKeys } from './cancel.js';
import { TableCatalog } from './catalog.js';
import { PostgresSession } from './session.js';

export interface PostgresAdapterOptions {
  /** Base directory of `{ file: … }` secrets (the config file's directory). */
  readonly secretsDir: string;
  /** Longest client message accepted; default the resource's limits.maxMessageBytes. */
  readonly maxMessageLength?: number;
  /** Time for a client to authenticate and for the target to accept the session; default 30 s. */
  readonly startupTimeoutMs?: number;
}

export interface PostgresAdapter extends ProtocolAdapter {
  /** Ends every live session (audited as ended by proxy_shutdown). */
  close(): Promise<void>;
}

/**
 * The PostgreSQL front door of one resource: agents connect with their OIDC token as password;
 * each connection becomes a governed session on the resource's target.
 */
export const createPostgresAdapter = (resource: PostgresResourceConfig, options: PostgresAdapterOptions): PostgresAdapter => {
  const cancelKeys = new CancelKeys();
  const sessions = new Set<PostgresSession>();
  const startupTimeoutMs = options.startupTimeoutMs ?? 30_000;
  const limits = resourceLimits(resource);
  // Read once at start: a missing certificate is a configuration error, raised here.
  const tls: SecureContext | undefined = resource.tls
    ? createSecureContext({ cert: requireSecret(resource.tls.cert, options.secretsDir), key: requireSecret(resource.tls.key, options.secretsDir) })
    : undefined;
  const catalog = new TableCatalog(() => ({
    host: resource.target.host,
    port: resource.target.port,
    ssl: resource.target.ssl,
    database: resource.target.database,
    user: resource.credentials.username,
    password: readSecret(resource.credentials.password, options.secretsDir),
    parameters: [['application_name', 'sluice-catalog'], ['options', '-c default_transaction_read_only=on']],
    timeoutMs: startupTimeoutMs,
  }));
  // Column rules follow SQL lineage, read from the parse tree: the parser is loaded before the
  // first session (a parser that cannot load leaves lineage unknown; rules still match by name).
  const parser = loadSqlClassifier().catch(() => undefined);
  return {
    async handleConnection(socket, ports) {
      await parser;
      const session = new PostgresSession(socket, {
        resource,
        ports,
        cancelKeys,
        catalog,
        tls,
        secretsDir: options.secretsDir,
        maxMessageLength: options.maxMessageLength ?? limits.maxMessageBytes,
        maxStatementBytes: limits.maxStatementBytes,
        startupTimeoutMs,
        sessions,
      });
      await session.run();
    },
    async close() {
      for (const session of [...sessions]) session.shutdown();
      catalog.close();
    },
  };
};
