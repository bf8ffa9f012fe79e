import { PROFILE_SEPARATOR } from '@sluice/contracts';
import type { ProfileMasker } from '@sluice/masking-engine';
import { declaredCursors, fetchedCursor } from '@sluice/sql-classifier';

/** Builds the masker of a profile name (`a+b` is the union of a and b); throws when masking is unavailable. */
export type MaskerOf = (profile: string) => ProfileMasker | undefined;

const MAX_CURSORS = 256;

/** The profile names a masker stands for (a union's parts). */
const partsOf = (masker: ProfileMasker): string[] => masker.name.split(PROFILE_SEPARATOR);

/** The masker of the union of these maskers' profiles; the strictest known one when the union cannot be built. */
const unionOf = (maskers: readonly (ProfileMasker | undefined)[], maskerOf: MaskerOf): ProfileMasker | undefined => {
  const present = maskers.filter((masker): masker is ProfileMasker => masker !== undefined);
  if (present.length <= 1) return present[0];
  const names = [...new Set(present.flatMap(partsOf))].sort();
  if (names.length === 1) return present[0];
  try {
    const union = maskerOf(names.join(PROFILE_SEPARATOR));
    if (union) return union;
  } catch {
    // Masking unavailable: fall through to the one with the most column rules.
  }
  return present.reduce((best, masker) => ((masker.columnRuleCount ?? Infinity) > (best.columnRuleCount ?? Infinity) ? masker : best));
};

/**
 * What a session's profiles owe to results that are not tied to the command that returns them.
 * - A cursor's rows were chosen by its DECLARE, whose tables (and so whose rule and profile) a
 *   `FETCH c` does not name: a FETCH is masked with the union of its own profile and the DECLARE's.
 *   Its lineage comes from the DECLARE text, recorded here too.
 * - A NOTIFY payload comes from any session and any column: it is masked with the union of every
 *   profile the session has been allowed under.
 */
export class SessionProfiles {
  readonly #cursors = new Map<string, { readonly text: string; readonly masker: ProfileMasker | undefined }>();
  readonly #seen = new Map<string, ProfileMasker>();
  #notifications: ProfileMasker | undefined;

  constructor(private readonly maskerOf: MaskerOf) {}

  /** The DECLARE texts by cursor name, for FETCH lineage. */
  get cursorTexts(): ReadonlyMap<string, string> {
    const texts = new Map<string, string>();
    for (const [name, cursor] of this.#cursors) texts.set(name, cursor.text);
    return texts;
  }

  /** Records an allowed command; returns the masker its results get (a FETCH: with its cursor's). */
  command(sql: string, masker: ProfileMasker | undefined): ProfileMasker | undefined {
    let effective = masker;
    const fetched = fetchedCursor(sql);
    if (fetched !== undefined) effective = unionOf([masker, this.#cursors.get(fetched)?.masker], this.maskerOf);
    for (const [name, text] of declaredCursors(sql)) {
      this.#cursors.delete(name);
      if (this.#cursors.size >= MAX_CURSORS) this.#cursors.delete(this.#cursors.keys().next().value!);
      this.#cursors.set(name, { text, masker });
    }
    if (effective && !this.#seen.has(effective.name)) {
      this.#seen.set(effective.name, effective);
      this.#notifications = unionOf([...this.#seen.values()], this.maskerOf);
    }
    return effective;
  }

  /** The masker of NOTIFY payloads. */
  get notifications(): ProfileMasker | undefined {
    return this.#notifications;
  }
}
