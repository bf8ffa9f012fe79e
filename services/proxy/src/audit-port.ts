import { buildEvent, writeExecutedEvent, type CloudEvent, type SluiceEventDataByKind, type SluiceEventKind } from '@sluice/contracts';
import { QueueShare, timeOrderedId, type EventPublisher } from '@sluice/event-bus';
import type { AuditPort, BacklogHold } from './ports.js';
import { boundEventData, resultFitsExecuted, type RecordingBounds } from './recording.js';

/**
 * How long a command's decision waits for its outcome before it goes out on its own: the most
 * that merging adds to what a proxy crash can lose (the publisher's gathering window comes on top).
 */
export const MERGE_WINDOW_MS = 20;

/** How long a command of a resource with `audit.wait: ack` waits for its record before it is refused. */
export const ACK_TIMEOUT_MS = 5_000;

/** How often paused sessions look whether the bus went away meanwhile. */
const OUTAGE_CHECK_MS = 100;

/**
 * How long a session paused for its agent's backlog waits while the bus is away before it is
 * ended as audit unavailable: no acknowledgement would come to resume it. Refusing its commands
 * one by one instead would queue a refusal's events for each, without bound, while nothing is stored.
 */
export const OUTAGE_GRACE_MS = 1_000;

type Data<K extends SluiceEventKind> = SluiceEventDataByKind[K];

type ExecutedFields = Parameters<typeof writeExecutedEvent>[1];
const buildExecuted = (fields: ExecutedFields): CloudEvent => buildEvent('command.executed', fields);

/**
 * Counts by detector with their names in sorted order, as RFC 8785 writes them (see emit): the
 * record itself when it is so already (none or one name, the usual case), else a sorted copy.
 */
const inSortedOrder = (counts: Readonly<Record<string, number>>): Readonly<Record<string, number>> => {
  let previous: string | undefined;
  for (const name in counts) {
    if (previous !== undefined && !(previous < name)) return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => (a < b ? -1 : 1)));
    previous = name;
  }
  return counts;
};

/** A command allowed without a hold whose outcome has not been recorded yet. */
interface Running {
  readonly decided: Data<'command.decided'>;
  readonly time: Date;
  readonly since: number;
  /** Whose `coming` it counts in until it is sent: the same entry it was added to, whatever happens to its session meanwhile. */
  readonly agent: AgentShare;
  completed?: Data<'command.completed'>;
  result?: Data<'result.returned'>;
}

/** A session's event sequence so far, and the agent whose share of the publisher's queue it counts against. */
interface SessionCount {
  sequence: number;
  /** Undefined when nothing is shared (no agent named, or a publisher without shares). */
  readonly agent: AgentShare | undefined;
  /** What its adapter reported `coming` and has not given back: part of its agent's `coming`. */
  taken: number;
}

/** An agent's share of the queue, and what its sessions will add to it. */
interface AgentShare {
  readonly key: string;
  readonly share: QueueShare;
  sessions: number;
  /**
   * Events its sessions will make that are not queued yet: decisions kept back for their outcome,
   * and what they have taken and not decided (AuditPort.coming). Kept as a running total, so a
   * check costs the same for an agent with one session as for one with hundreds.
   */
  coming: number;
}

export interface RecordingAuditPort extends AuditPort {
  acknowledged(sessionId: string): Promise<void>;
  backlogged(sessionId: string, resume: (outage: boolean) => void, hold?: BacklogHold): boolean;
  coming(sessionId: string, events: number): void;
  /** Sends every decision still waiting for its outcome on its own (shutdown). */
  flush(): void;
}

/**
 * Turns session actions into CloudEvents with a per-session sequence and hands them to the
 * batching publisher; nothing here waits for the bus. What an agent controls (command texts,
 * results) is cut to the recording bounds first, so one agent's large statement or row makes a
 * truncated record, never an event the bus refuses.
 *
 * A command allowed without a hold is recorded as one `command.executed` event (its decision,
 * outcome and masked result) instead of three: the decision is kept back until the outcome comes,
 * at most MERGE_WINDOW_MS, after which it goes out as `command.decided` and the rest follows as
 * `command.completed` and `result.returned`. Any other event of the session first sends what is
 * kept back, so a session's events keep their order. Held and refused commands keep their three,
 * and so do commands of a resource that waits for its records (`acknowledged`).
 */
export const createAuditPort = (
  publisher: Pick<EventPublisher, 'publish' | 'healthy' | 'acknowledged'> & Partial<Pick<EventPublisher, 'publishWritten' | 'overShare'>>,
  options: { source: string; recording: RecordingBounds & { readonly maxEventBytes: number }; now?: () => Date; mergeWindowMs?: number; ackTimeoutMs?: number },
): RecordingAuditPort => {
  const sessions = new Map<string, SessionCount>();
  /**
   * By agent (issuer and sub): one agent's sessions share one part of the queue, so opening more
   * connections does not get it more. An entry outlives the agent's sessions until their events
   * are acknowledged: reconnecting does not make a fresh share either.
   */
  const agents = new Map<string, AgentShare>();
  // One Date per millisecond: the commands of a busy proxy share it (nothing changes a recorded time).
  let clock = new Date(0);
  const currentTime = (): Date => {
    const millis = Date.now();
    if (millis !== clock.getTime()) clock = new Date(millis);
    return clock;
  };
  const now = options.now ?? currentTime;
  const windowMs = options.mergeWindowMs ?? MERGE_WINDOW_MS;
  // Limits under which a command and its result could outgrow one event: the result goes apart.
  const withResult = resultFitsExecuted(options.recording);
  /** Per session, its running commands by command id, in the order they were decided. */
  const running = new Map<string, Map<string, Running>>();
  /** Sessions with a command whose outcome came in this turn. */
  const finished = new Set<string>();
  /** Commands kept back, all sessions together. */
  let held = 0;
  let timer: NodeJS.Timeout | NodeJS.Immediate | undefined;

  /** The agent's share a session counts against, made or joined at its start. */
  const joinAgent = (key: string): AgentShare => {
    for (const [other, entry] of agents) if (entry.sessions === 0 && entry.share.events === 0) agents.delete(other);
    let entry = agents.get(key);
    if (!entry) agents.set(key, (entry = { key, share: new QueueShare(), sessions: 0, coming: 0 }));
    entry.sessions += 1;
    return entry;
  };

  /** The session's last event: what it had taken and not decided will not come from it now (a closed connection's commands never dispatched). */
  const leaveAgent = (count: SessionCount): void => {
    const entry = count.agent;
    if (!entry) return;
    entry.coming -= count.taken;
    count.taken = 0;
    entry.sessions -= 1;
    if (entry.sessions === 0 && entry.share.events === 0) agents.delete(entry.key);
  };

  /** Kept-back counts of sessions whose agent is not known (no session.started seen): counted apart, never shared. */
  const unshared: AgentShare = { key: '', share: new QueueShare(), sessions: 0, coming: 0 };

  /**
   * Paused commands, ended should the bus be away while they wait (past OUTAGE_GRACE_MS): no
   * acknowledgement would come to resume them. The reading of a target is not let go: what it
   * would bring could not be recorded, and its client waits as TCP holds it.
   */
  const outageWatch = new Set<{ readonly since: number; readonly end: (outage: boolean) => void }>();
  let outageTimer: NodeJS.Timeout | undefined;
  const watchForOutage = (watched: { readonly since: number; readonly end: (outage: boolean) => void }): void => {
    outageWatch.add(watched);
    outageTimer ??= setInterval(() => {
      if (!publisher.healthy) {
        const now = performance.now();
        for (const entry of [...outageWatch]) if (now - entry.since >= OUTAGE_GRACE_MS) entry.end(true);
      }
      if (outageWatch.size === 0) {
        clearInterval(outageTimer);
        outageTimer = undefined;
      }
    }, OUTAGE_CHECK_MS).unref();
  };

  /** The session's count, made with its first event (session.started names its agent). */
  const countOf = (sessionId: string, kind: SluiceEventKind, data: unknown): SessionCount => {
    let count = sessions.get(sessionId);
    if (count) return count;
    const subject = kind === 'session.started' ? (data as Data<'session.started'>).subject : undefined;
    count = { sequence: 0, agent: subject && publisher.overShare ? joinAgent(`${subject.issuer}\n${subject.sub}`) : undefined, taken: 0 };
    sessions.set(sessionId, count);
    return count;
  };

  /**
   * The session's next sequence; its count goes with its last event (its share stays on the
   * events' until acknowledged). A session.rejected is the last only as a session's first: a
   * running Redis session whose re-authentication was refused records one and goes on, and must
   * neither start its sequence again nor leave its agent's share.
   */
  const nextSequence = (count: SessionCount, sessionId: string, kind: SluiceEventKind): number => {
    const sessionseq = ++count.sequence;
    if (kind === 'session.ended' || (kind === 'session.rejected' && sessionseq === 1)) {
      sessions.delete(sessionId);
      leaveAgent(count);
    }
    return sessionseq;
  };

  const publish = <K extends SluiceEventKind>(sessionId: string, kind: K, data: Data<K>, time: Date): void => {
    const count = countOf(sessionId, kind, data);
    const sessionseq = nextSequence(count, sessionId, kind);
    publisher.publish(buildEvent(kind, { id: timeOrderedId(), source: options.source, subject: sessionId, time, sessionseq, data }), count.agent?.share);
  };

  /** The one event of most commands, written by writeExecutedEvent straight into the publisher's queue where it takes it so. */
  const publishExecuted = (sessionId: string, data: Data<'command.executed'>, time: Date): void => {
    const count = countOf(sessionId, 'command.executed', data);
    const fields: ExecutedFields = { id: timeOrderedId(), source: options.source, subject: sessionId, time, sessionseq: nextSequence(count, sessionId, 'command.executed'), data };
    if (publisher.publishWritten) publisher.publishWritten(fields.id, writeExecutedEvent, fields, buildExecuted, count.agent?.share);
    else publisher.publish(buildExecuted(fields), count.agent?.share);
  };

  /** A command's events: one command.executed when its outcome is in, else what it has so far. */
  const emit = (sessionId: string, command: Running): void => {
    const { decided, completed, result } = command;
    if (!completed) {
      publish(sessionId, 'command.decided', decided, command.time);
      if (result) publish(sessionId, 'result.returned', result, command.time);
      return;
    }
    // Built as one literal: this runs once per command, and an object made by spreads costs
    // several times as much to build and to serialise. Absent optional fields are undefined,
    // which JSON leaves out as it does a missing member. Members in sorted order (RFC 8785's):
    // the event's JSON is then the canonical text the audit store hashes as it is.
    const merged = result && withResult;
    publishExecuted(
      sessionId,
      {
        action: decided.action,
        command: decided.command,
        commandBytes: decided.commandBytes,
        commandId: decided.commandId,
        decision: decided.decision,
        durationMs: completed.durationMs,
        error: completed.error,
        ok: completed.ok,
        outcome: completed.outcome,
        protocol: decided.protocol,
        reason: decided.reason,
        resource: decided.resource,
        result: merged
          ? { bytes: result.bytes, columns: result.columns, maskedCounts: inSortedOrder(result.maskedCounts), rowCount: result.rowCount, rows: result.rows, truncated: result.truncated }
          : undefined,
        risk: decided.risk,
        rule: decided.rule,
        tables: decided.tables,
        truncated: decided.truncated,
      },
      command.time,
    );
    if (result && !merged) publish(sessionId, 'result.returned', result, command.time);
  };

  /** Sends a session's running commands: all of them, or only those finished or past the window. */
  const release = (sessionId: string, all: boolean, at: number): void => {
    const commands = running.get(sessionId);
    if (!commands) return;
    for (const command of commands.values()) {
      if (!all && !command.completed && at - command.since < windowMs) continue;
      commands.delete(command.decided.commandId);
      held -= 1;
      command.agent.coming -= 1;
      emit(sessionId, command);
    }
  };

  /**
   * `release` from a timer or a microtask: there, a publisher closed at shutdown (it refuses
   * events from then on, as it does to the adapters' own calls) must not crash the process.
   */
  const releaseLater = (sessionId: string, at: number): void => {
    try {
      release(sessionId, false, at);
    } catch {
      for (const command of running.get(sessionId)?.values() ?? []) {
        held -= 1;
        command.agent.coming -= 1;
      }
      running.delete(sessionId);
    }
  };

  /** Sends what is past the window at `at`; the timer is re-armed while anything is kept back. */
  const releaseExpired = (at: number): void => {
    timer = undefined;
    for (const [sessionId, commands] of running) {
      // A session's map stays while it runs (one less allocation per command); gone ones go here.
      if (commands.size === 0) running.delete(sessionId);
      else releaseLater(sessionId, at);
    }
    if (held > 0) schedule(windowMs);
  };

  const schedule = (delayMs: number): void => {
    if (timer) return;
    timer = setTimeout(() => {
      // The window is judged now, but the decisions go only after the I/O already waiting is
      // read (the poll phase runs between timers and setImmediate): a busy proxy (a pipelined
      // burst from many clients) may take longer than the window to get round to replies that
      // came long ago. Sent from the timer, every such decision went out alone and its outcome
      // after it: three events instead of one, more work, later replies, more of the same.
      const at = performance.now();
      timer = setImmediate(() => releaseExpired(at));
      timer.unref();
    }, delayMs);
    timer.unref();
  };

  /** A command's outcome came: it goes at the end of this turn, so the result recorded with it joins it. */
  const finish = (sessionId: string): void => {
    // An adapter records a command's completion and its result in one go, in either order.
    if (finished.size === 0) {
      queueMicrotask(() => {
        const at = performance.now();
        for (const done of finished) releaseLater(done, at);
        finished.clear();
      });
    }
    finished.add(sessionId);
  };

  return {
    record<K extends SluiceEventKind>(sessionId: string, kind: K, data: Data<K>): void {
      const bounded = boundEventData(kind, data, options.recording);
      const commands = running.get(sessionId);
      if (kind === 'command.decided' && (bounded as Data<'command.decided'>).decision === 'allow') {
        const decided = bounded as Data<'command.decided'>;
        const entry: Running = { decided, time: now(), since: performance.now(), agent: sessions.get(sessionId)?.agent ?? unshared };
        if (commands) commands.set(decided.commandId, entry);
        else running.set(sessionId, new Map([[decided.commandId, entry]]));
        held += 1;
        entry.agent.coming += 1;
        schedule(windowMs);
        return;
      }
      if (commands && (kind === 'command.completed' || kind === 'result.returned')) {
        const part = bounded as Data<'command.completed'> | Data<'result.returned'>;
        const command = commands.get(part.commandId);
        if (command && kind === 'command.completed' && !command.completed) {
          command.completed = part as Data<'command.completed'>;
          // Its result came first (PostgreSQL's order): nothing more can join it, so it goes now,
          // as the end of the turn would send it, without waiting for that turn's end.
          if (command.result) releaseLater(sessionId, performance.now());
          else finish(sessionId);
          return;
        }
        // One result per command merges; a second one (a COPY's beside its rows) goes on its own.
        if (command && kind === 'result.returned' && !command.result) {
          command.result = part as Data<'result.returned'>;
          return;
        }
      }
      if (commands && commands.size > 0) release(sessionId, true, performance.now());
      if (kind === 'session.ended' || kind === 'session.rejected') running.delete(sessionId);
      publish(sessionId, kind, bounded, now());
    },
    acknowledged(sessionId: string): Promise<void> {
      // What the session has kept back goes now: a decision waited for is never merged.
      release(sessionId, true, performance.now());
      const timeoutMs = options.ackTimeoutMs ?? ACK_TIMEOUT_MS;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`events not acknowledged by the bus within ${timeoutMs} ms`)), timeoutMs);
      });
      return Promise.race([publisher.acknowledged(), late]).finally(() => clearTimeout(timer));
    },
    backlogged(sessionId: string, resume: (outage: boolean) => void, hold: BacklogHold = 'commands'): boolean {
      const agent = sessions.get(sessionId)?.agent;
      if (!agent || !publisher.overShare?.(agent.share, agent.coming)) return false;
      const share = agent.share;
      if (hold === 'commands') {
        const since = performance.now();
        let waiting = true;
        const once = (outage: boolean): void => {
          if (!waiting) return;
          waiting = false;
          outageWatch.delete(watched);
          resume(outage);
        };
        const watched = { since, end: once };
        share.whenUnder(() => once(false));
        watchForOutage(watched);
      } else share.whenUnder(() => resume(false));
      // An acknowledgement resumes. With nothing of the agent's queued yet, what is to come is
      // queued within the merge window; should it not be (it never came), nothing would resume.
      if (share.events === 0) {
        setTimeout(() => {
          if (share.events === 0) for (const resumeNow of share.takeResumers() ?? []) resumeNow();
        }, windowMs * 2).unref();
      }
      return true;
    },
    coming(sessionId: string, events: number): void {
      const count = sessions.get(sessionId);
      if (!count?.agent) return;
      // Never more given back than the session reported (it may have reported before its count
      // began, or ended meanwhile): below zero, the agent would be let past its share.
      const moved = Math.max(events, -count.taken);
      count.taken += moved;
      count.agent.coming += moved;
    },
    flush(): void {
      for (const sessionId of [...running.keys()]) release(sessionId, true, performance.now());
    },
    get healthy() {
      return publisher.healthy;
    },
  };
};
