import type { MaskingConfig } from '@sluice/config';

export type Strategy = 'redact' | 'partial' | 'hash' | 'null';

/**
 * What the engine knows of a result column. Build one object per result column (per
 * RowDescription) and pass that same object for every cell: maskers cache the column's plan
 * (type kind, column rule, name hints) per object, so per-cell cost stays a lookup.
 */
export interface ColumnInfo {
  readonly name: string;
  /** `schema.table.column` when the source table is known. */
  readonly qualifiedName?: string;
  /** PostgreSQL type OID when known (text format values are assumed). */
  readonly typeOid?: number;
  /**
   * The columns this column's value derives from (SQL lineage: `substr(ssn, 8) AS tail` derives
   * from `ssn`). A column rule that matches any of them applies to this column too.
   */
  readonly derivedFrom?: readonly ColumnSource[];
}

/** A source column of a derived result column. */
export interface ColumnSource {
  readonly name: string;
  /** `schema.table.column` when the source table is known. */
  readonly qualifiedName?: string;
  /**
   * The value may carry any column (of `table` when given, `schema.table`): a whole row
   * (`to_jsonb(p)`), a function that reads tables itself, a NOTIFY payload. Every column rule
   * that could match such a column applies, the strictest first.
   */
  readonly anyColumn?: true;
  readonly table?: string;
}

/** What a column rule's count is keyed by: `column:<rule>`. */
export const COLUMN_COUNT_PREFIX = 'column:';

/** Counts of masked values per detector (or `column:<rule>` for column rules). */
export type MaskCounts = Record<string, number>;

export interface ProfileMasker {
  readonly name: string;
  /**
   * Masks one value of a result cell (text format). Returns the value to send: the same string
   * when nothing was found, a masked string, or null (SQL NULL) where the column type cannot
   * carry a masked string. Increments counts.
   */
  maskCell(value: string, column: ColumnInfo | undefined, counts: MaskCounts): string | null;
  /**
   * Masks one binary-format cell (PostgreSQL binary wire format, the column's type by typeOid).
   * Returns the same bytes when nothing was found, new bytes, or null (SQL NULL) where the type
   * cannot carry a masked value. Increments counts.
   */
  maskBinaryCell(value: Uint8Array, column: ColumnInfo | undefined, counts: MaskCounts): Uint8Array | null;
  /** Masks sensitive substrings of free text (no column rules). */
  maskText(value: string, counts: MaskCounts): string;
  /** Walks a parsed JSON document and masks its string leaves (keys kept); a member whose key a column rule names is masked whole by that rule. */
  maskJson(value: unknown, counts: MaskCounts): unknown;
  /**
   * True when a column rule forces this column to be masked whatever its content (by its own
   * name or by a column it derives from).
   */
  hasColumnRule(column: ColumnInfo): boolean;
  /**
   * How many column rules the profile has; 0 lets adapters skip what only column rules need
   * (catalog look-ups, SQL lineage). Undefined: unknown, assume some.
   */
  readonly columnRuleCount?: number;
}

export interface CompiledMasking {
  /**
   * A profile by name. `a+b` (names joined by PROFILE_SEPARATOR, when no profile has that exact
   * name) is the union of both: every detector and column rule of each, the strictest strategy.
   */
  profile(name: string): ProfileMasker | undefined;
  /** A masker with every built-in and custom detector and the partial strategy, for command texts. */
  readonly everything: ProfileMasker;
}

export type CompileMasking = (config: MaskingConfig, options: { readonly hashKey?: string }) => CompiledMasking;

export { PROFILE_SEPARATOR } from '@sluice/contracts';

/** Strategies from the one that shows the least to the one that shows the most. */
export const STRATEGY_STRICTNESS: readonly Strategy[] = ['null', 'redact', 'hash', 'partial'];
