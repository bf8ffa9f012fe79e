import type { SluiceEventDataByKind, SluiceEventKind, Subject, SubjectRef } from '@sluice/contracts';
import type { AuditPort, BacklogHold } from '../ports.js';
import { millisecondsSince } from '../recording.js';
import type { Command } from './expectations.js';

const subjectRef = (subject: Subject): SubjectRef => ({ sub: subject.sub, groups: [...subject.groups], issuer: subject.issuer });

/**
 * A session's audit port (its own records and its governor's), which can keep what is recorded
 * while the target's answers are relayed for after they are written to the agent: the agent's
 * answer does not wait for its events to be written. Nothing waits on those events either way
 * (they are published in batches later; a resource with `audit.wait: ack` waits before a command
 * goes to the target), and they are recorded in the order they were made, before anything else
 * of the session can be (relaying is synchronous).
 */
export class RelayingAudit implements AuditPort {
  #afterWrite: (() => void)[] | undefined;
  readonly acknowledged: AuditPort['acknowledged'];
  readonly backlogged: AuditPort['backlogged'];
  readonly coming: AuditPort['coming'];

  constructor(private readonly audit: AuditPort) {
    this.acknowledged = audit.acknowledged && ((sessionId: string) => audit.acknowledged!(sessionId));
    this.backlogged = audit.backlogged && ((sessionId: string, resume: (outage: boolean) => void, hold?: BacklogHold) => audit.backlogged!(sessionId, resume, hold));
    this.coming = audit.coming && ((sessionId: string, events: number) => audit.coming!(sessionId, events));
  }

  /**
   * Runs `relay` (answers handled and written to the agent), then records what it recorded;
   * `failed` is told if recording throws, as it would have been inside the relay.
   */
  relaying(relay: () => void, failed: (error: unknown) => void): void {
    if (this.#afterWrite) return relay();
    const records: (() => void)[] = [];
    this.#afterWrite = records;
    try {
      relay();
    } finally {
      this.#afterWrite = undefined;
      try {
        for (const record of records) record();
      } catch (error) {
        failed(error);
      }
    }
  }

  record<K extends SluiceEventKind>(sessionId: string, kind: K, data: SluiceEventDataByKind[K]): void {
    if (this.#afterWrite) this.#afterWrite.push(() => this.audit.record(sessionId, kind, data));
    else this.audit.record(sessionId, kind, data);
  }

  get healthy(): boolean {
    return this.audit.healthy;
  }
}

/**
 * The records a PostgreSQL session writes of itself: its start, its refusal or end, each
 * command's completion and the results it returned. Decisions and approvals are the governor's.
 */
export class SessionAudit {
  readonly #audit: AuditPort;
  readonly #sessionId: string;
  readonly #resource: string;
  readonly #client: string;

  constructor(audit: AuditPort, sessionId: string, resource: string, client: string) {
    this.#audit = audit;
    this.#sessionId = sessionId;
    this.#resource = resource;
    this.#client = client;
  }

  /** The connection was refused (or dropped) during startup. */
  rejected(reason: string, code: string, subject?: Subject): void {
    this.#audit.record(this.#sessionId, 'session.rejected', {
      resource: this.#resource,
      protocol: 'postgres',
      client: this.#client,
      reason,
      code,
      ...(subject ? { subject: subjectRef(subject) } : {}),
    });
  }

  started(subject: Subject, readOnly: boolean, parameters: Omit<SluiceEventDataByKind['session.started'], 'resource' | 'protocol' | 'subject' | 'client' | 'readOnly'>): void {
    this.#audit.record(this.#sessionId, 'session.started', {
      resource: this.#resource,
      protocol: 'postgres',
      subject: subjectRef(subject),
      client: this.#client,
      readOnly,
      ...parameters,
    });
  }

  ended(reason: string, commands: number, durationMs: number): void {
    this.#audit.record(this.#sessionId, 'session.ended', { resource: this.#resource, reason, commands, durationMs });
  }

  /** A command's end, once: later calls for it are ignored. */
  completed(command: Command, ok: boolean): void {
    if (command.done) return;
    command.done = true;
    this.#audit.record(this.#sessionId, 'command.completed', {
      commandId: command.id,
      outcome: command.error ? 'ERROR' : (command.tags.at(-1) ?? ''),
      ok: ok && !command.error,
      ...(command.error ? { error: command.error } : {}),
      durationMs: millisecondsSince(command.started),
    });
  }

  returned(result: SluiceEventDataByKind['result.returned']): void {
    this.#audit.record(this.#sessionId, 'result.returned', result);
  }
}
