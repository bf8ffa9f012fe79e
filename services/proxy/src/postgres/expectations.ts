/**
 * What a PostgreSQL session expects back from the target, in order: one entry per message (or
 * command) sent upstream, and the statements, portals and commands they carry. The session
 * pairs each backend message with the head of this queue.
 */
import type { FieldDescription } from '@sluice/codec-pg';
import type { ProfileMasker } from '@sluice/masking-engine';
import type { ClientEncodingReport, PreparedStatementChange, SqlLineage, TargetCatalogFacts } from '@sluice/sql-classifier';
import type { Decision } from '../ports.js';
import type { CopyOutSet, ResultSet } from './results.js';
import type { DeclaredCursor } from './session-profiles.js';
import type { EncodingSwitch } from './client-encoding-session.js';

/** A denial or refusal the agent sees; `message` is ours, written to be shown. */
export interface Refusal {
  readonly code: string;
  readonly message: string;
  /** The 1-based character the error points at (a syntax error). */
  readonly position?: number;
}

export interface Statement {
  readonly name: string;
  readonly text: string;
  readonly decision: Decision;
  readonly masker: ProfileMasker | undefined;
  /**
   * Decided where the session's search_path may have changed unseen (see
   * SessionDecisions.decideOnUnknownPath): on these schemas (the session's own path when the text
   * names no relation without its schema), which masking follows too. Undefined: on the session's path.
   */
  readonly unknownPath?: readonly string[];
  description?: readonly FieldDescription[];
  /** The text as recorded (masked), computed once for all executions. */
  recorded?: string;
}

export interface Portal {
  readonly name: string;
  readonly statement: Statement;
  description?: readonly FieldDescription[];
  /** Set at Bind when the execution is held for approval, so the approval names its command. */
  readonly commandId?: string;
  /**
   * A SQL cursor (DECLARE) used as a portal: run as `FETCH … FROM` it. Its rows are described
   * again right before each Execute, since CLOSE and DECLARE can give the name other columns.
   */
  readonly cursor?: boolean;
}

/**
 * What the pipeline since the last Sync has Parse'd, Bound and Described: later messages of it
 * name them before the server has answered, as the server lets them.
 */
export interface Pipeline {
  readonly statements: Map<string, Statement>;
  readonly portals: Map<string, Portal>;
  readonly described: Set<string>;
}

export const newPipeline = (): Pipeline => ({ statements: new Map(), portals: new Map(), described: new Set() });

export interface Command {
  readonly id: string;
  readonly masker: ProfileMasker | undefined;
  /** Its decision's withholdServerTexts: it writes a table whose reads are guarded (server-texts.ts). */
  readonly withholdsServerTexts: boolean;
  /** The SQL text whose results this command returns, and the search path it was decided with (for lineage). */
  readonly sql: string;
  readonly searchPath: readonly string[] | undefined;
  /** The target catalog facts it was decided with (user overloads of built-in names change its lineage). */
  readonly catalog: TargetCatalogFacts | undefined;
  /**
   * The schemaEpoch those facts were taken at (a FETCH: its cursor's DECLARE's): where
   * TableCatalog.factsCurrent no longer holds for it, every result column counts as any column.
   */
  readonly factsEpoch: number;
  /** The text's result-column lineage, computed at the first result set that needs it (null: unknown). */
  lineage: SqlLineage | null | undefined;
  readonly started: number;
  readonly tags: string[];
  /** Its SQL PREPAREs and DEALLOCATEs, in order: each is true once its command tag comes back. */
  readonly preparedChanges: PreparedStatementChange[];
  /** Its DECLAREs, in order; `cursorsConfirmed` of them have had their command tag back. */
  readonly declares: readonly DeclaredCursor[];
  /** The CopyDone/CopyFail messages the client had sent before this command, and its COPY FROM STDINs so far: each ends at the next one. */
  readonly copyEnds: number;
  copyIns: number;
  cursorsConfirmed: number;
  error: { code: string; message: string } | undefined;
  done: boolean;
  /** A SET/RESET of client_encoding: the agent's conversion switches to this at its CommandComplete. */
  readonly encoding: EncodingSwitch | undefined;
  /** Where its result reports client_encoding (null: nowhere), read at its first row under a converted encoding. */
  encodingReport: ClientEncodingReport | null | undefined;
}

export type Expect =
  | { readonly kind: 'query'; readonly command: Command; result?: ResultSet | undefined; copy?: CopyOutSet | undefined }
  /** The statement and portal become known to the proxy at ParseComplete / BindComplete, as on the server. */
  | { readonly kind: 'parse'; readonly masker: ProfileMasker | undefined; readonly statement: Statement }
  | { readonly kind: 'bind'; readonly masker: ProfileMasker | undefined; readonly portal: Portal }
  | { readonly kind: 'close'; readonly target: 'S' | 'P'; readonly name: string }
  /** `copyEnds`: the CopyDone/CopyFail messages the client had sent before this Sync. */
  | { readonly kind: 'sync'; readonly copyEnds: number }
  | { readonly kind: 'describeStatement'; readonly statement: Statement }
  | { readonly kind: 'describePortal'; readonly portal: Portal; readonly internal: boolean }
  | { readonly kind: 'execute'; readonly command: Command; readonly portal: Portal; result?: ResultSet | undefined; copy?: CopyOutSet | undefined }
  /** A query of the proxy's own on the session (reading search_path): its answer never reaches the client. */
  | { readonly kind: 'internal'; readonly rows: (string | null)[][]; readonly done: (rows: (string | null)[][] | undefined) => void; failed?: boolean }
  /**
   * A refusal the target's transaction must feel as its own error would: a statement that fails
   * went upstream in the refused command's place; its error is replaced by `message`. `sync`: a
   * Sync followed it (ReadyForQuery comes back), else a Flush (the target now skips to the Sync).
   */
  | { readonly kind: 'refused'; readonly message: Buffer; readonly sync: boolean };

export const changesPreparedStatements = (expect: Expect): boolean =>
  expect.kind === 'parse' ||
  (expect.kind === 'close' && expect.target === 'S') ||
  ((expect.kind === 'query' || expect.kind === 'execute') && expect.command.preparedChanges.length > 0);

/** Expectations that end a server-side skip: the Sync's ReadyForQuery and what follows it. */
const STOPS_SKIPPING: ReadonlySet<Expect['kind']> = new Set(['sync', 'query', 'internal']);
export const stopsSkipping = (expect: Expect): boolean => STOPS_SKIPPING.has(expect.kind) || (expect.kind === 'refused' && expect.sync);
/**
 * After an extended-protocol error the target discards every message up to a Sync, a simple
 * Query too: only a Sync (a refusal's own included) is answered again.
 */
export const endsTargetSkip = (expect: Expect): boolean => expect.kind === 'sync' || (expect.kind === 'refused' && expect.sync);
