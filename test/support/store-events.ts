import { buildEvent, type CloudEvent } from '@sluice/contracts';

/** A run's own store database (name and URL) and the admin URL that drops it. */
export const storeDatabase = (prefix: string) => {
  const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  const database = `${prefix}_${run}`;
  return { run, database, adminUrl: 'postgres://postgres@127.0.0.1:5432/postgres', url: `postgres://postgres@127.0.0.1:5432/${database}` };
};

/**
 * command.executed events as a Sluice proxy publishes them, each with the next id of the run and a
 * command, reason and row of `text`; `resource` defaults to `text` too.
 */
export const executedEvents = (run: string, resource?: string): ((session: string, text: string) => CloudEvent) => {
  let counter = 0;
  return (session, text) => {
    counter += 1;
    return buildEvent('command.executed', {
      id: `${run}-${counter}`,
      source: 'proxy',
      subject: session,
      time: new Date(),
      data: {
        action: 'read', command: text, commandId: `c${counter}`, decision: 'allow', durationMs: 0.4, ok: true, outcome: 'SELECT 1',
        protocol: 'postgres', reason: text, resource: resource ?? text, result: { bytes: 1, columns: ['a'], maskedCounts: {}, rowCount: 1, rows: [[text]], truncated: false }, risk: 'low', rule: 'readers',
      },
    });
  };
};
