import type { MaskingConfig } from '@sluice/config';

export type Strategy = 'redact' | 'partial' | 'hash' | 'null';

/** What the engine knows of a result column. */
export interface ColumnInfo {
  readonly name: string;
  /** `schema.table.column` when the source table is known. */
  readonly qualifiedName?: string;
  /** PostgreSQL type OID when known (text format values are assumed). */
  readonly typeOid?: number;
}

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
  /** Masks sensitive substrings of free text (no column rules). */
  maskText(value: string, counts: MaskCounts): string;
  /** Walks a parsed JSON document and masks its string leaves (keys kept). */
  maskJson(value: unknown, counts: MaskCounts): unknown;
  /** True when a column rule forces this column to be masked whatever its content. */
  hasColumnRule(column: ColumnInfo): boolean;
}

export interface CompiledMasking {
  profile(name: string): ProfileMasker | undefined;
  /** A masker with every built-in and custom detector and the partial strategy, for command texts. */
  readonly everything: ProfileMasker;
}

export type CompileMasking = (config: MaskingConfig, options: { readonly hashKey?: string }) => CompiledMasking;
