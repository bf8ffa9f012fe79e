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

/** A cursor a command DECLAREs: its name and the text of its DECLARE statement. */
export type DeclaredCursor = readonly [name: string, text: string];

/**
 * What a session's profiles owe to results that are not tied to the command that returns them.
 * - A cursor's rows were chosen by its DECLARE, whose tables (and so whose rule and profile) a
 *   `FETCH c` does not name: a FETCH is masked with the union of its own profile and that of every
 *   DECLARE of the name. Its lineage comes from the DECLARE text the server accepted: a DECLARE the
 *   server refuses (`cursor "c" already exists`) changes nothing, as a refused Parse does not.
 * - A NOTIFY payload comes from any session and any column: it is masked with the union of every
 *   profile the session has been allowed under.
 */
export class SessionProfiles {
  /** DECLARE texts the server confirmed (its `DECLARE CURSOR` tag), by cursor name. */
  readonly #cursorTexts = new Map<string, string>();
  /**
   * Every profile a DECLARE of the name was allowed under, as one union (it only ever widens), and
   * the schemaEpoch of the facts its last DECLARE was decided with: a holdable cursor keeps the
   * rows of the views it was declared over, whatever they have been replaced by since.
   */
  readonly #cursors = new Map<string, { readonly masker: ProfileMasker | undefined; readonly factsEpoch: number }>();
  readonly #seen = new Map<string, ProfileMasker>();
  #notifications: ProfileMasker | undefined;

  constructor(private readonly maskerOf: MaskerOf) {}

  /** The DECLARE texts by cursor name for FETCH lineage: the confirmed ones, then the command's own. */
  cursorTexts(own: readonly DeclaredCursor[] = []): ReadonlyMap<string, string> {
    if (own.length === 0) return this.#cursorTexts;
    const texts = new Map(this.#cursorTexts);
    for (const [name, text] of own) texts.set(name, text);
    return texts;
  }

  /**
   * Records an allowed command decided with facts of schemaEpoch `factsEpoch`; returns the masker
   * its results get (a FETCH: with its cursor's), the cursors it declares, to be confirmed one by
   * one as their command tags come back, and the epoch of the facts its rows derive from (a FETCH:
   * its cursor's; -1, never current, for a cursor no DECLARE here opened).
   */
  command(sql: string, masker: ProfileMasker | undefined, factsEpoch: number): { masker: ProfileMasker | undefined; declares: DeclaredCursor[]; factsEpoch: number } {
    let effective = masker;
    let rowsEpoch = factsEpoch;
    const fetched = fetchedCursor(sql);
    if (fetched !== undefined) {
      const cursor = this.#cursors.get(fetched);
      effective = unionOf([masker, cursor?.masker], this.maskerOf);
      rowsEpoch = cursor?.factsEpoch ?? -1;
    }
    const declares = [...declaredCursors(sql)];
    for (const [name] of declares) {
      const earlier = this.#cursors.get(name);
      this.#cursors.delete(name);
      if (this.#cursors.size >= MAX_CURSORS) this.#cursors.delete(this.#cursors.keys().next().value!);
      this.#cursors.set(name, { masker: unionOf([earlier?.masker, masker], this.maskerOf), factsEpoch });
    }
    if (effective && !this.#seen.has(effective.name)) {
      this.#seen.set(effective.name, effective);
      this.#notifications = unionOf([...this.#seen.values()], this.maskerOf);
    }
    return { masker: effective, declares, factsEpoch: rowsEpoch };
  }

  /** The server answered a DECLARE with its command tag: the cursor now holds this text. */
  confirmCursor([name, text]: DeclaredCursor): void {
    this.#cursorTexts.delete(name);
    // Forgetting one makes its FETCH's lineage unknown: every column then counts as any column.
    if (this.#cursorTexts.size >= MAX_CURSORS) this.#cursorTexts.delete(this.#cursorTexts.keys().next().value!);
    this.#cursorTexts.set(name, text);
  }

  /**
   * The server now holds a protocol portal of this name (Bind): a `FETCH … FROM` it reads that
   * portal, not a DECLARE of the name the server has since closed, so its lineage is unknown.
   */
  forgetCursor(name: string): void {
    this.#cursorTexts.delete(name);
  }

  /** Whether the server confirmed a DECLARE of this cursor (it may have been closed since: the server says). */
  hasCursor(name: string): boolean {
    return this.#cursorTexts.has(name);
  }

  /** The masker of NOTIFY payloads. */
  get notifications(): ProfileMasker | undefined {
    return this.#notifications;
  }
}
