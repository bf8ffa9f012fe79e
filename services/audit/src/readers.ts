import { SluiceError, SluiceErrorCode, type Subject } from '@sluice/contracts';

/** Who may read the audit trail: `audit.readers` from the config. */
export interface AuditReaders {
  readonly groups: readonly string[];
  readonly subs: readonly string[];
  /** The issuer(s) readers must come from; absent: any configured issuer. */
  readonly issuer?: string | readonly string[];
}

export class NotAnAuditReaderError extends SluiceError {
  readonly code = SluiceErrorCode.NotAnAuditReader;
  override readonly expose = true;
  constructor(sub: string) {
    super(`${sub} is not an audit reader`);
  }
}

/**
 * True when the subject is named in `audit.readers`, by its `sub` or one of its groups, and comes
 * from the issuer the readers name, if they name one (another issuer may mint the same names). No
 * readers configured means nobody: the trail holds every agent's commands and the (masked) data
 * they saw, so an omission must never open it.
 */
export const isAuditReader = (subject: Subject, readers: AuditReaders): boolean =>
  (readers.issuer === undefined || [readers.issuer].flat().includes(subject.issuer)) &&
  (readers.subs.includes(subject.sub) || subject.groups.some((group) => readers.groups.includes(group)));
