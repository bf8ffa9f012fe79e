/**
 * Runs a command (a driver's own test suite, checked out elsewhere) through Sluice: starts an
 * OIDC issuer and `sluice up` with one PostgreSQL resource and a rule allowing everything, mints
 * a token, and runs the command with libpq's environment (PGHOST, PGPORT, PGUSER, PGPASSWORD,
 * PGDATABASE) pointing at Sluice's listener. With `--direct` the same command runs against the
 * server itself, so the two runs differ only in the path. Holds nothing of any driver's code.
 *
 *   npx tsx --conditions=development bench/driver-suites.ts --database DB [--direct] -- CMD ARGS…
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { freePort } from '../test/support/ports.js';
import { startTestIssuer } from '../test/support/oidc.js';
import { startSluice } from '../test/support/sluice.js';
import { CleanupStack } from './support/cleanup.js';
import { createDatabase, dropDatabase, PG_ADMIN_USER, PG_HOST, PG_PORT } from './support/targets.js';
import { NATS_URL } from './support/deployment.js';
import { deleteStreams } from '../test/support/databases.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    database: { type: 'string' },
    username: { type: 'string', default: PG_ADMIN_USER },
    actions: { type: 'string', default: 'read,write,ddl,admin' },
    direct: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help || !values.database || positionals.length === 0) {
  process.stderr.write(
    'usage: bench/driver-suites.ts --database DB [--username ROLE] [--actions read,write,ddl,admin] [--direct] -- CMD ARGS…\n' +
      '  DB is the target database and the resource name; ROLE the target credentials (trust auth).\n',
  );
  process.exit(values.help ? 0 : 2);
}

const database = values.database;
const [command, ...args] = positionals as [string, ...string[]];

/** Runs the command with `env` added; resolves with its exit code. */
const run = (env: Record<string, string>): Promise<number> =>
  new Promise((resolve) => {
    const child = spawn(command, args, { stdio: 'inherit', env: { ...process.env, ...env } });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });

const viaSluice = async (cleanup: CleanupStack): Promise<number> => {
  const issuer = await startTestIssuer();
  cleanup.defer('issuer', () => issuer.close());
  const runId = randomBytes(4).toString('hex');
  const storeDatabase = `sluice_drivers_store_${runId}`;
  await createDatabase(storeDatabase);
  cleanup.defer('event store', () => dropDatabase(storeDatabase));
  cleanup.defer('event streams', () => deleteStreams([`SLUICE_DRIVERS_${runId}`]));
  const listen = await freePort();
  const sluice = await startSluice(
    {
      bus: { url: NATS_URL, stream: `SLUICE_DRIVERS_${runId}`, subjectPrefix: `drivers.${runId}.events` },
      eventStore: { url: `postgres://${PG_ADMIN_USER}@${PG_HOST}:${PG_PORT}/${storeDatabase}` },
      identity: { oidc: [{ issuer: issuer.issuer, audience: issuer.audience }] },
      resources: [
        { name: database, type: 'postgres', listen: `127.0.0.1:${listen}`, target: { host: PG_HOST, port: PG_PORT, database }, credentials: { username: values.username } },
      ],
      rules: [{ name: 'driver-suite', effect: 'allow', subjects: { groups: ['driver-suites'] }, actions: values.actions.split(',') }],
    },
    // On a loaded machine `sluice up` can take minutes to be ready; a suite run is worth the wait.
    { env: { NATS_URL: '', DATABASE_URL: '', LOG_LEVEL: 'warn', OTEL_TRACES_EXPORTER: 'none', OTEL_SDK_DISABLED: 'true' }, readyTimeoutMs: 300_000 },
  );
  cleanup.defer('sluice', () => sluice.stop());
  // A suite may open connections for an hour; the token is checked at each login.
  const token = await issuer.mint({ sub: 'driver-suite', groups: ['driver-suites'], expiresIn: 3600 });
  return run({ PGHOST: '127.0.0.1', PGPORT: String(listen), PGUSER: values.username, PGPASSWORD: token, PGDATABASE: database, SLUICE_PGPORT: String(listen) });
};

const cleanup = new CleanupStack();
process.once('SIGINT', () => void cleanup.run().then(() => process.exit(130)));
let code = 1;
try {
  code = values.direct ? await run({ PGHOST: PG_HOST, PGPORT: String(PG_PORT), PGUSER: values.username, PGDATABASE: database }) : await viaSluice(cleanup);
} finally {
  await cleanup.run();
}
process.exit(code);
