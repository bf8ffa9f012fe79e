import type { AssessedAction } from '@sluice/contracts';
import type { TargetCatalogFacts } from './target-catalog.js';

export interface StatementClassification extends AssessedAction {
  /** The grammar's node name, e.g. `SelectStmt`, `DeleteStmt`. */
  readonly type: string;
  /** `schema.table`, unqualified names resolved against the search path. */
  readonly reads: readonly string[];
  readonly writes: readonly string[];
  /** Functions called, as written (lower case, schema kept when given). */
  readonly functions: readonly string[];
  /** PREPARE name: the adapter records it for later EXECUTEs. */
  readonly prepares?: string;
  /** DEALLOCATE name (`*` for ALL). */
  readonly deallocates?: string;
  readonly executes?: string;
}

export type SqlClassification =
  | (AssessedAction & {
      readonly ok: true;
      readonly statements: readonly StatementClassification[];
      /** Every table the message touches, sorted. */
      readonly tables: readonly string[];
      /**
       * True when the decision depends only on the statement's structure, not on its
       * constants, so it may be reused for the same normalized text.
       */
      readonly cacheable: boolean;
    })
  | { readonly ok: false; readonly error: string };

export interface ClassifyOptions {
  /** The session's search_path; unqualified tables resolve against its first usable schema. */
  readonly searchPath?: readonly string[];
  /** The session's prepared statements, name -> SQL text (the PREPARE statement or its body). */
  readonly preparedStatements?: ReadonlyMap<string, string>;
  /** What the target's catalog says (attribute-notation functions, rewriting views, inheritance). */
  readonly catalog?: TargetCatalogFacts;
}
