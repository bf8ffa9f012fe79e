import { UNDECIDED_COMMAND_EVENTS, type AuditPort } from '../ports.js';

/**
 * How long a request of an agent past its share of the audit queue waits for it to drain before
 * it is refused: a client is not kept hanging while the audit cannot keep up with its agent.
 */
export const BACKLOG_WAIT_MS = 5_000;

/**
 * 'drained' once the agent is under its share of the audit queue (at once when it is), 'gone'
 * when the bus went away while it waited, 'late' when it did not drain within BACKLOG_WAIT_MS.
 * Checked again at each resume: every request waiting is resumed at once, and those that find
 * the agent past its share again wait again. A request let through counts against its agent's
 * share from then on (AuditPort.coming), so that the next request's check, on this connection or
 * another, sees it before its decision is recorded; the caller gives it back once it is.
 */
export const backlogDrained = async (audit: AuditPort, sessionId: string): Promise<'drained' | 'gone' | 'late'> => {
  if (!audit.backlogged) return 'drained';
  const deadline = performance.now() + BACKLOG_WAIT_MS;
  for (;;) {
    let settle: ((outcome: 'drained' | 'gone') => void) | undefined;
    let early: 'drained' | 'gone' | undefined;
    const backlogged = audit.backlogged(sessionId, (outage) => {
      const outcome = outage ? 'gone' : 'drained';
      if (settle) settle(outcome);
      else early = outcome;
    });
    if (!backlogged) {
      audit.coming?.(sessionId, UNDECIDED_COMMAND_EVENTS);
      return 'drained';
    }
    if (early === 'gone') return early;
    if (early === 'drained') continue;
    const left = deadline - performance.now();
    if (left <= 0) return 'late';
    let timer: NodeJS.Timeout | undefined;
    const outcome = await new Promise<'drained' | 'gone' | 'late'>((resolve) => {
      settle = resolve;
      timer = setTimeout(() => resolve('late'), left);
    });
    clearTimeout(timer);
    if (outcome !== 'drained') return outcome;
  }
};
