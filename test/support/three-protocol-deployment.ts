import { randomUUID } from 'node:crypto';
import { createServer, type RequestListener, type Server } from 'node:http';
import pg from 'pg';
import { createDatabase, deleteStreams, dropDatabases } from './databases.js';
import { startTestIssuer, type TestIssuer } from './oidc.js';
import { freePorts } from './ports.js';
import { startSluice, type RunningSluice } from './sluice.js';

/** A listener's `limits` section, as the config file takes it. */
type ListenerLimits = Record<string, number>;

export interface ThreeProtocolOptions {
  /**
   * Short name of the spec: the target database is `sluice_e2e_<tag>_<run>`, the event store
   * `sluice_e2e_<tag>store_<run>`, the stream `SLUICE_E2E_<TAG>_<run>`.
   */
  readonly tag: string;
  /** Run in the fresh target database before Sluice starts. */
  readonly targetSetupSql?: string;
  /** The HTTP target behind resource `api`. */
  readonly api: RequestListener;
  readonly limits?: { readonly postgres?: ListenerLimits; readonly redis?: ListenerLimits; readonly http?: ListenerLimits };
}

export interface ThreeProtocolDeployment {
  /** Unique to this deployment; the names of its database, store and stream end with it. */
  readonly run: string;
  readonly storeDb: string;
  readonly stream: string;
  readonly idp: TestIssuer;
  readonly sluice: RunningSluice;
  readonly pgPort: number;
  readonly redisPort: number;
  readonly httpPort: number;
  /**
   * A pg client logged in through the proxy as `sub` in group agents. With `ignoreErrors`, an
   * 'error' event (the proxy ending the session on purpose) does not crash the test run.
   */
  pgAgent(sub: string, options?: { ignoreErrors?: boolean }): Promise<pg.Client>;
  /** Stops Sluice, the issuer and the target, and drops the databases and the stream. */
  stop(): Promise<void>;
}

/**
 * The whole deployment (`sluice up` on real NATS, PostgreSQL, Redis and an HTTP target) with
 * one resource per protocol, `db`, `kv` and `api`, and one rule: group agents may read and write.
 */
export const startThreeProtocolDeployment = async ({ tag, targetSetupSql, api: answer, limits = {} }: ThreeProtocolOptions): Promise<ThreeProtocolDeployment> => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_${tag}_${run}`;
  const storeDb = `sluice_e2e_${tag}store_${run}`;
  const stream = `SLUICE_E2E_${tag.toUpperCase()}_${run}`;
  const subjectPrefix = `e2e${tag}.${run}.events`;
  let idp: TestIssuer | undefined;
  let sluice: RunningSluice | undefined;
  let api: Server | undefined;
  const stop = async (): Promise<void> => {
    await sluice?.stop();
    await idp?.close();
    await new Promise((resolve) => (api ? api.close(resolve) : resolve(undefined)));
    await dropDatabases([targetDb, storeDb]);
    await deleteStreams([stream]);
  };
  try {
    await createDatabase(targetDb, targetSetupSql);
    idp = await startTestIssuer();
    api = createServer(answer);
    await new Promise<void>((resolve) => api!.listen(0, '127.0.0.1', resolve));
    const apiPort = (api.address() as { port: number }).port;
    const [pgPort, redisPort, httpPort] = (await freePorts(3)) as [number, number, number];
    const withLimits = (own: ListenerLimits | undefined) => (own ? { limits: own } : {});
    sluice = await startSluice({
      identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
      eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
      bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix },
      resources: [
        { name: 'db', type: 'postgres', listen: `127.0.0.1:${pgPort}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' }, ...withLimits(limits.postgres) },
        { name: 'kv', type: 'redis', listen: `127.0.0.1:${redisPort}`, target: { host: '127.0.0.1', port: 6379 }, ...withLimits(limits.redis) },
        { name: 'api', type: 'http', listen: `127.0.0.1:${httpPort}`, target: { url: `http://127.0.0.1:${apiPort}` }, ...withLimits(limits.http) },
      ],
      rules: [{ name: 'agents-work', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read', 'write'] }],
    });
    const issuer = idp;
    return {
      run,
      storeDb,
      stream,
      idp: issuer,
      sluice,
      pgPort,
      redisPort,
      httpPort,
      pgAgent: async (sub, options = {}) => {
        const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: sub, database: 'db', password: await issuer.mint({ sub, groups: ['agents'] }) });
        if (options.ignoreErrors) client.on('error', () => undefined);
        await client.connect();
        return client;
      },
      stop,
    };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
};
