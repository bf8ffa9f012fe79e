import pg from 'pg';
import { findProcesses, watchCpu } from './processes.js';
import type { CausedCpu } from './samples.js';

/** The PostgreSQL backends serving the event store's database now (the audit service's connections). */
const storeBackends = async (storeUrl: string): Promise<number[]> => {
  const client = new pg.Client({ connectionString: storeUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
    return rows.map((row) => row.pid);
  } finally {
    await client.end();
  }
};

const natsServers = (): number[] => findProcesses(['nats-server']).filter((entry) => !entry.cmdline.includes('--config')).map((entry) => entry.pid);

export interface CausedCpuWatch {
  stop(): Promise<CausedCpu>;
}

/**
 * Issue 12 counts "the PostgreSQL and NATS work they cause" in the CPU per governed statement:
 * the event store's backends and nats-server, sampled from /proc like Sluice's own processes.
 * The backends are looked up at both ends, so a connection the pool opened during the run counts.
 */
export const watchCausedCpu = async (storeUrl: string): Promise<CausedCpuWatch> => {
  const before = await storeBackends(storeUrl).catch(() => []);
  let backends = before;
  const store = watchCpu(() => ({ proxy: undefined, all: backends }));
  const nats = watchCpu(() => ({ proxy: undefined, all: natsServers() }));
  return {
    async stop() {
      const natsUs = nats.stop().allUs;
      backends = [...new Set([...before, ...(await storeBackends(storeUrl).catch(() => []))])];
      return { storeUs: store.stop().allUs, natsUs };
    },
  };
};
