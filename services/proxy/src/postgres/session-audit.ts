import type { SluiceEventDataByKind, Subject, SubjectRef } from '@sluice/contracts';
import type { AuditPort } from '../ports.js';
import { millisecondsSince } from '../recording.js';
import type { Command } from './expectations.js';

const subjectRef = (subject: Subject): SubjectRef => ({ sub: subject.sub, groups: [...subject.groups], issuer: subject.issuer });

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
