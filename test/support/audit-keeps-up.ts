import pg from 'pg';

/** How far the event store is behind a load that just ended (issue 12's "the audit keeps up"). */
export interface AuditCatchUp {
  /** Commands the load generator counted as done. */
  readonly expected: number;
  /** Commands of the load recorded with their outcome (one command.executed, or decided + completed). */
  readonly recorded: number;
  /** Commands recorded more than once (the same command id twice): never expected. */
  readonly doubled: number;
  /** Milliseconds after the load ended until every command was in the store; undefined: not within the limit. */
  readonly caughtUpMs: number | undefined;
  readonly withinMs: number;
  readonly ok: boolean;
}

/** Where a load's events start in the store, and how long the events of loads before it took to stop arriving. */
export interface StoreMark {
  /** The store's last seq once still: the load's commands come after it. */
  readonly seq: number;
  /** Milliseconds spent waiting for the store to be still (an earlier load's events still being stored). */
  readonly waitedMs: number;
  /** False: still storing when `giveUpMs` ran out; `seq` is then where it had got to. */
  readonly still: boolean;
}

/**
 * The store's last seq once it is still (no new event for 300 ms). A load that ended before
 * (another pgbench script with the same statements, or a heavier load whose events the audit is
 * still storing) may still be arriving: marked mid-way, its tail would count as this load's, and a
 * check that starts on a backlog measures the backlog too.
 */
export const storeMark = async (storeUrl: string, giveUpMs = 5_000): Promise<StoreMark> => {
  const client = new pg.Client({ connectionString: storeUrl });
  await client.connect();
  try {
    const last = async (): Promise<number> => Number((await client.query<{ seq: string }>('SELECT coalesce(max(seq), 0) AS seq FROM sluice.events')).rows[0]!.seq);
    const startedAt = Date.now();
    let seq = await last();
    for (const giveUpAt = startedAt + giveUpMs; Date.now() < giveUpAt; ) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const now = await last();
      if (now === seq) return { seq, waitedMs: Math.max(0, Date.now() - startedAt - 300), still: true };
      seq = now;
    }
    return { seq, waitedMs: Date.now() - startedAt, still: false };
  } finally {
    await client.end();
  }
};

/**
 * Polls the store from the moment a load ended until every command of it is recorded with its
 * outcome, at most `withinMs`, and that those are the load's commands (texts starting with
 * `commandPrefix`, stored after `afterSeq`), none doubled.
 * The poll counts outcome events only (one `command.executed`, or `command.completed` after a
 * `command.decided`): a query that reads every event's text costs seconds once a long load has
 * stored a million, and timed inside the poll it would charge the checker's own query to the audit.
 * A load generator may count fewer commands than it sent (statements cut off when it stops, at
 * most one per client): `expected` to `expected + slack` recorded commands pass.
 */
export const auditCatchUp = async (options: {
  readonly storeUrl: string;
  readonly afterSeq: number;
  readonly commandPrefix: string;
  readonly expected: number;
  readonly slack: number;
  readonly loadEndedAt: number;
  readonly withinMs?: number;
}): Promise<AuditCatchUp> => {
  const withinMs = options.withinMs ?? 2_000;
  const client = new pg.Client({ connectionString: options.storeUrl });
  await client.connect();
  try {
    // Counted on from the last row seen: each poll reads only what was stored since the one
    // before, not the whole load again. A row committed late with a lower seq (another writer)
    // is missed here, which only delays the poll's end: the load's own count below decides.
    let counted = 0;
    let seenSeq = options.afterSeq;
    const outcomes = async (): Promise<number> => {
      const { rows } = await client.query<{ outcomes: string; last: string | null }>(
        `SELECT count(*) FILTER (WHERE kind IN ('command.executed', 'command.completed')) AS outcomes, max(seq) AS last
           FROM sluice.events WHERE seq > $1`,
        [seenSeq],
      );
      counted += Number(rows[0]!.outcomes);
      if (rows[0]!.last !== null) seenSeq = Number(rows[0]!.last);
      return counted;
    };
    // A command is recorded with its outcome as one command.executed, or (past the merge
    // window) as command.decided and command.completed.
    const loadCommands = async (): Promise<{ recorded: number; doubled: number }> => {
      const { rows } = await client.query<{ recorded: string; ids: string }>(
        `SELECT count(*) AS recorded, count(DISTINCT command_id) AS ids
           FROM sluice.events e
          WHERE e.seq > $1 AND e.data->>'command' LIKE $2 || '%'
            AND (e.kind = 'command.executed'
                 OR (e.kind = 'command.decided' AND EXISTS (
                       SELECT 1 FROM sluice.events d
                        WHERE d.command_id = e.command_id AND d.session_id = e.session_id AND d.kind = 'command.completed')))`,
        [options.afterSeq, options.commandPrefix],
      );
      return { recorded: Number(rows[0]!.recorded), doubled: Number(rows[0]!.recorded) - Number(rows[0]!.ids) };
    };
    const late = (): boolean => Date.now() - options.loadEndedAt >= withinMs;
    let caughtUpMs: number | undefined;
    let found: { recorded: number; doubled: number };
    for (;;) {
      let stored = await outcomes();
      while (stored < options.expected && !late()) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        stored = await outcomes();
      }
      const at = Date.now();
      found = await loadCommands();
      // Outcomes of commands other than the load's may have ended the poll early: the load's own count decides.
      if (found.recorded >= options.expected) caughtUpMs = Math.max(0, at - options.loadEndedAt);
      if (caughtUpMs !== undefined || late()) break;
    }
    const { recorded, doubled } = found;
    const ok = caughtUpMs !== undefined && caughtUpMs <= withinMs && doubled === 0 && recorded <= options.expected + options.slack;
    return { expected: options.expected, recorded, doubled, caughtUpMs, withinMs, ok };
  } finally {
    await client.end();
  }
};

export const describeCatchUp = (result: AuditCatchUp): string =>
  `${result.recorded} of ${result.expected} commands recorded${result.caughtUpMs === undefined ? ` (not all within ${result.withinMs} ms)` : ` ${result.caughtUpMs} ms after the load ended`}, ${result.doubled} doubled: ${result.ok ? 'the audit keeps up' : 'the audit does NOT keep up'}`;
