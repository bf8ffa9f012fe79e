/**
 * The compliance views over sluice.events, as the migrations create them. A migration that ran
 * keeps its effect: each passes its own parts, and the text each one builds is the text it always
 * ran (migration-views.spec.ts pins them).
 */

/** One row per session, headed by its session.started (or session.rejected) event; `commandKinds`: the events counted as commands. */
export const sessionsView = (create: 'CREATE' | 'CREATE OR REPLACE', commandKinds: string): string => `${create} VIEW sluice.sessions AS
       SELECT h.session_id,
              h.subject_sub AS subject,
              h.resource,
              h.data->>'protocol' AS protocol,
              h.time AS started_at,
              a.ended_at,
              a.commands,
              a.denials,
              a.approvals,
              a.masked_values,
              a.events,
              h.kind = 'session.rejected' AS rejected,
              h.seq AS first_seq
         FROM sluice.events h
         CROSS JOIN LATERAL (
           SELECT max(e.time) FILTER (WHERE e.kind IN ('session.ended', 'session.rejected')) AS ended_at,
                  count(*) FILTER (WHERE ${commandKinds}) AS commands,
                  count(*) FILTER (WHERE (e.kind = 'command.decided' AND e.decision = 'deny')
                                      OR (e.kind = 'approval.decided' AND e.decision = 'deny')) AS denials,
                  count(*) FILTER (WHERE e.kind = 'approval.requested') AS approvals,
                  coalesce(sum(e.masked_values), 0)::bigint AS masked_values,
                  count(*) AS events
             FROM sluice.events e
            WHERE e.session_id = h.session_id
         ) a
        WHERE h.kind IN ('session.started', 'session.rejected')`;

/**
 * One row per command: its decision, how it completed (`completion`), its result's counts
 * (`result`) and its approval; `commandKinds`: the events that are commands.
 */
export const commandsView = (create: 'CREATE' | 'CREATE OR REPLACE', commandKinds: string, completion: string, result: string): string => `${create} VIEW sluice.commands AS
       SELECT c.session_id,
              c.command_id,
              c.seq,
              c.time,
              c.resource,
              c.data->>'protocol' AS protocol,
              c.data->>'command' AS command,
              c.data->>'action' AS action,
              c.data->>'risk' AS risk,
              c.decision,
              c.data->>'rule' AS rule,
              c.data->>'reason' AS reason,
              ap.approval_id,
              ap.approver,
              ap.approval_decision,
              done.outcome,
              done.ok,
              done.duration_ms,
              res.row_count,
              res.truncated,
              coalesce(res.masked_values, 0) AS masked_values
         FROM sluice.events c
         LEFT JOIN LATERAL (
${completion}
         ) done ON true
         LEFT JOIN LATERAL (
${result}
         ) res ON true
         LEFT JOIN LATERAL (
           SELECT q.approval_id,
                  (SELECT string_agg(x.data->>'approver', ',' ORDER BY x.seq) FROM sluice.events x
                    WHERE x.approval_id = q.approval_id AND x.kind = 'approval.decided') AS approver,
                  (SELECT x.decision FROM sluice.events x
                    WHERE x.approval_id = q.approval_id AND x.kind = 'approval.decided'
                    ORDER BY x.seq DESC LIMIT 1) AS approval_decision
             FROM sluice.events q
            WHERE q.command_id = c.command_id AND q.kind = 'approval.requested'
            ORDER BY q.seq LIMIT 1
         ) ap ON true
        WHERE ${commandKinds}`;

/** Migration 0001: a command is its command.decided, completed and returned by later events. */
export const COMMAND_DECIDED = {
  commandKinds: "e.kind = 'command.decided'",
  viewKinds: "c.kind = 'command.decided'",
  completion: `           SELECT d.data->>'outcome' AS outcome, (d.data->>'ok')::boolean AS ok, (d.data->>'durationMs')::float8 AS duration_ms
             FROM sluice.events d
            WHERE d.command_id = c.command_id AND d.session_id = c.session_id AND d.kind = 'command.completed'
            ORDER BY d.seq LIMIT 1`,
  result: `           SELECT (r.data->>'rowCount')::bigint AS row_count, (r.data->>'truncated')::boolean AS truncated, r.masked_values
             FROM sluice.events r
            WHERE r.command_id = c.command_id AND r.session_id = c.session_id AND r.kind = 'result.returned'
            ORDER BY r.seq LIMIT 1`,
} as const;

/** Migration 0004: a command.executed carries its completion and result itself. */
export const COMMAND_EXECUTED = {
  commandKinds: "e.kind IN ('command.decided', 'command.executed')",
  viewKinds: "c.kind IN ('command.decided', 'command.executed')",
  completion: `           SELECT c.data->>'outcome' AS outcome, (c.data->>'ok')::boolean AS ok, (c.data->>'durationMs')::float8 AS duration_ms
            WHERE c.kind = 'command.executed'
           UNION ALL
           (SELECT d.data->>'outcome', (d.data->>'ok')::boolean, (d.data->>'durationMs')::float8
              FROM sluice.events d
             WHERE c.kind = 'command.decided' AND d.command_id = c.command_id AND d.session_id = c.session_id AND d.kind = 'command.completed'
             ORDER BY d.seq LIMIT 1)`,
  result: `           SELECT (c.data->'result'->>'rowCount')::bigint AS row_count, (c.data->'result'->>'truncated')::boolean AS truncated, c.masked_values
            WHERE c.kind = 'command.executed' AND c.data->'result' IS NOT NULL
           UNION ALL
           (SELECT (r.data->>'rowCount')::bigint, (r.data->>'truncated')::boolean, r.masked_values
              FROM sluice.events r
             WHERE c.kind = 'command.decided' AND r.command_id = c.command_id AND r.session_id = c.session_id AND r.kind = 'result.returned'
             ORDER BY r.seq LIMIT 1)`,
} as const;
