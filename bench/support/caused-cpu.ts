import pg from 'pg';
import { cpuTimeMicros, findProcesses } from './processes.js';
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

/** CPU used since `before` by the processes alive at the end; one that ended meanwhile counts nothing (not minus its start). */
const usedSince = (before: ReadonlyMap<number, number | undefined>, pids: readonly number[]): number => {
  let used = 0;
  for (const pid of pids) {
    const end = cpuTimeMicros(pid);
    if (end === undefined) continue;
    used += Math.max(0, end - (before.get(pid) ?? 0));
  }
  return used;
};

const readAll = (pids: readonly number[]) => new Map(pids.map((pid) => [pid, cpuTimeMicros(pid)] as const));

/**
 * Issue 12 counts "the PostgreSQL and NATS work they cause" in the CPU per governed statement:
 * the event store's backends and nats-server, sampled from /proc like Sluice's own processes.
 * The backends are looked up at both ends, so a connection the pool opened during the run counts
 * in full; one it closed during the run is lost (an underestimate, never a negative figure).
 */
export const watchCausedCpu = async (storeUrl: string): Promise<CausedCpuWatch> => {
  const backends = await storeBackends(storeUrl).catch(() => []);
  const nats = natsServers();
  const storeBefore = readAll(backends);
  const natsBefore = readAll(nats);
  return {
    async stop() {
      const natsUs = usedSince(natsBefore, nats);
      const after = await storeBackends(storeUrl).catch(() => []);
      return { storeUs: usedSince(storeBefore, [...new Set([...backends, ...after])]), natsUs };
    },
  };
};
