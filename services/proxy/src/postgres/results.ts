import { binaryToText, decodeDataRow, decodeRowDescription, encodeCopyData, encodeDataRow, type FieldDescription } from '@sluice/codec-pg';
import { ResultWithheldError, type ResultReturned } from '@sluice/contracts';
import type { ColumnInfo, ColumnSource, MaskCounts, ProfileMasker } from '@sluice/masking-engine';
import type { CopyFormat } from '@sluice/sql-classifier';
import { splitCopyLine, writeCopyField } from './copy-lines.js';
import { boundRows } from '../recording.js';
import { looksLikeJson } from '../redis/reply-masking.js';

export interface RecordingLimits {
  readonly maxRows: number;
  readonly maxBytes: number;
}

interface Column {
  readonly info: ColumnInfo;
  readonly typeOid: number;
  readonly binary: boolean;
}

type Qualify = (tableOid: number, attnum: number) => string | undefined;
type Derived = readonly (readonly ColumnSource[] | undefined)[] | undefined;
/** The sources of each column of a description, given the qualified names the catalog gives its columns. */
type Derive = (fields: readonly FieldDescription[], qualified: readonly (string | undefined)[]) => Derived;

const columnsOf = (fields: readonly FieldDescription[], qualified: readonly (string | undefined)[], derivedFrom: Derived): Column[] =>
  fields.map((f, index) => {
    const qualifiedName = qualified[index];
    const sources = derivedFrom?.[index];
    // One ColumnInfo object per column for the whole result: the masker caches its plan by it.
    const info: ColumnInfo = {
      name: f.name,
      typeOid: f.typeOid,
      ...(qualifiedName === undefined ? {} : { qualifiedName }),
      ...(sources === undefined ? {} : { derivedFrom: sources }),
    };
    return { info, typeOid: f.typeOid, binary: f.format === 1 };
  });

/** The columns of a result set as masking sees them (see ResultColumnsCache). */
export class ResultColumns {
  constructor(
    readonly fields: readonly FieldDescription[],
    readonly columns: readonly Column[],
  ) {}
}

/** Columns worked out for one description, with what they were worked out under. */
interface RememberedColumns {
  readonly masker: ProfileMasker | undefined;
  readonly lineage: unknown;
  readonly catalog: unknown;
  readonly statement: number;
  readonly fields: readonly FieldDescription[];
  readonly qualified: readonly (string | undefined)[];
  readonly columns: ResultColumns;
}

/**
 * The columns of the RowDescription a session saw last. A statement repeated, or another of its
 * shape (a new literal each time, as under pgbench -S), describes the same columns: it gets the
 * same ColumnInfo objects, so the masker works out each column's plan once, not per statement.
 * Reused only for the same masker, the same lineage (`lineage`: the statement's lineage object,
 * one for all texts of a shape), the same catalog facts (`catalog`: their views, which a view's
 * qualified name is followed through), the same statement of the text, and the same qualified
 * names as the catalog gives them now.
 */
export class ResultColumnsCache {
  #last: (RememberedColumns & { readonly body: Buffer }) | undefined;
  /** The same for an Execute's columns (see ofFields). */
  #lastFields: RememberedColumns | undefined;

  /** `statement`: which result of a multi-statement text this is (its lineage differs). */
  of(body: Buffer, masker: ProfileMasker | undefined, lineage: unknown, catalog: unknown, statement: number, qualify: Qualify, derive: Derive): ResultColumns {
    const last = this.#last;
    if (last && reusable(last, masker, lineage, catalog, statement, qualify, () => last.body.equals(body))) return last.columns;
    const remembered = workOut(decodeRowDescription(body), masker, lineage, catalog, statement, qualify, derive);
    // A copy: the body is a view of a socket chunk, which it would keep alive.
    this.#last = { ...remembered, body: Buffer.from(body) };
    return remembered.columns;
  }

  /**
   * `of` for an Execute's result, whose columns its portal holds already decoded (each format as
   * the Bind asked): a statement bound and run again (pgbench -M extended, any driver's prepared
   * query) describes the same columns, which then get the same ColumnInfo objects and plans.
   */
  ofFields(fields: readonly FieldDescription[], masker: ProfileMasker | undefined, lineage: unknown, catalog: unknown, statement: number, qualify: Qualify, derive: Derive): ResultColumns {
    const last = this.#lastFields;
    if (last && reusable(last, masker, lineage, catalog, statement, qualify, () => sameFields(last.fields, fields))) return last.columns;
    this.#lastFields = workOut(fields, masker, lineage, catalog, statement, qualify, derive);
    return this.#lastFields.columns;
  }
}

/**
 * Whether columns worked out before serve again: the same masker, lineage, catalog facts and statement, the same
 * description (`sameDescription`, asked only once those hold), and the same qualified names as the
 * catalog gives them now.
 */
const reusable = (last: RememberedColumns, masker: ProfileMasker | undefined, lineage: unknown, catalog: unknown, statement: number, qualify: Qualify, sameDescription: () => boolean): boolean =>
  last.masker === masker &&
  last.lineage === lineage &&
  last.catalog === catalog &&
  last.statement === statement &&
  sameDescription() &&
  last.fields.every((f, index) => qualify(f.tableOid, f.attnum) === last.qualified[index]);

const workOut = (
  fields: readonly FieldDescription[],
  masker: ProfileMasker | undefined,
  lineage: unknown,
  catalog: unknown,
  statement: number,
  qualify: Qualify,
  derive: Derive,
): RememberedColumns => {
  const qualified = fields.map((f) => qualify(f.tableOid, f.attnum));
  return { masker, lineage, catalog, statement, fields, qualified, columns: new ResultColumns(fields, columnsOf(fields, qualified, derive(fields, qualified))) };
};

/** Every member of every column the same: what `of` compares as the RowDescription's bytes. */
const sameFields = (a: readonly FieldDescription[], b: readonly FieldDescription[]): boolean => {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index += 1) {
    const x = a[index]!;
    const y = b[index]!;
    if (
      x.name !== y.name ||
      x.tableOid !== y.tableOid ||
      x.attnum !== y.attnum ||
      x.typeOid !== y.typeOid ||
      x.typeSize !== y.typeSize ||
      x.typeModifier !== y.typeModifier ||
      x.format !== y.format
    ) {
      return false;
    }
  }
  return true;
};

const UNCHANGED = Symbol('unchanged');

const hex = (value: Buffer): string => `\\x${value.toString('hex')}`;

/** The text of a binary value for the audit record: decoded where the type is known, else hex. */
const binaryText = (typeOid: number, value: Buffer): string => {
  try {
    return binaryToText(typeOid, value) ?? hex(value);
  } catch {
    return hex(value);
  }
};

/**
 * What a result keeps for its result.returned event: every row counted, the masked rows kept (as
 * the agent got them, as text) up to the recording limits.
 */
abstract class RecordedRows {
  readonly counts: MaskCounts = {};
  readonly rows: (string | null)[][] = [];
  rowCount = 0;
  bytes = 0;
  protected recordedBytes = 0;
  truncated = false;

  constructor(readonly limits: RecordingLimits) {}

  /** The names of the recorded columns. */
  abstract get columnNames(): string[];

  /** Rows are still kept: nothing cut yet and the limits not reached. */
  protected get recording(): boolean {
    return !this.truncated && this.rows.length < this.limits.maxRows && this.recordedBytes < this.limits.maxBytes;
  }

  toEvent(commandId: string): ResultReturned {
    return {
      commandId,
      columns: this.columnNames,
      rows: this.rows,
      rowCount: this.rowCount,
      bytes: this.bytes,
      truncated: this.truncated || this.rowCount > this.rows.length,
      maskedCounts: this.counts,
    };
  }
}

/**
 * One result set on its way to the agent: masks every DataRow cell with the command's profile,
 * re-frames rows whose values changed, and keeps the masked rows (as the agent got them, as text)
 * up to the recording limits for the result.returned event.
 */
export class ResultSet extends RecordedRows {
  readonly #columns: readonly Column[];
  readonly #masker: ProfileMasker | undefined;
  /** The columns, as described (the client edge converts a DataRow's values by their format and type). */
  readonly fields: readonly FieldDescription[];

  /**
   * @param qualify resolves a column's table OID and attribute number to `schema.table.column`
   * (column rules may name columns that way).
   * @param derivedFrom per column, the source columns its value derives from (SQL lineage of the
   * statement), so column rules follow `substr(ssn, 8) AS tail`.
   */
  constructor(
    described: readonly FieldDescription[] | ResultColumns,
    masker: ProfileMasker | undefined,
    limits: RecordingLimits,
    qualify?: Qualify,
    derivedFrom?: Derived,
  ) {
    super(limits);
    this.fields = described instanceof ResultColumns ? described.fields : described;
    this.#columns =
      described instanceof ResultColumns ? described.columns : columnsOf(described, described.map((f) => qualify?.(f.tableOid, f.attnum)), derivedFrom);
    this.#masker = masker;
  }

  override get columnNames(): string[] {
    return this.#columns.map((c) => c.info.name);
  }

  /**
   * Processes one DataRow body; returns the re-encoded message when a value changed, undefined
   * when the original bytes may go to the agent as they are.
   */
  row(body: Buffer): Buffer | undefined {
    this.rowCount++;
    this.bytes += body.length;
    const masker = this.#masker;
    const recording = this.recording;
    if (!masker && !recording) {
      if (this.rowCount > this.rows.length) this.truncated = true;
      return undefined;
    }
    const values = decodeDataRow(body);
    if (values.length !== this.#columns.length) throw new ResultWithheldError('DataRow does not match its RowDescription');
    let changed: (Buffer | string | null)[] | undefined;
    const record: (string | null)[] | undefined = recording ? new Array<string | null>(values.length) : undefined;
    let recordBytes = 0;
    for (let i = 0; i < values.length; i++) {
      const value = values[i]!;
      if (value === null) {
        if (record) record[i] = null;
        continue;
      }
      const column = this.#columns[i]!;
      if (masker) {
        const [masked, text] = this.#mask(masker, column, value);
        if (masked !== UNCHANGED) {
          changed ??= values.slice();
          changed[i] = masked;
        }
        if (record) {
          record[i] = text;
          recordBytes += text === null ? 0 : text.length;
        }
      } else if (record) {
        const text = column.binary ? binaryText(column.typeOid, value) : value.toString('utf8');
        record[i] = text;
        recordBytes += text.length;
      }
    }
    if (record) {
      if (this.recordedBytes + recordBytes > this.limits.maxBytes) {
        // A first row larger than the whole budget is kept cut, not whole (it may be megabytes).
        if (this.rows.length === 0) this.rows.push(boundRows([record], { ...this.limits, maxRowBytes: this.limits.maxBytes }).rows[0]!);
        this.recordedBytes = this.limits.maxBytes;
        this.truncated = true;
      } else {
        this.rows.push(record);
        this.recordedBytes += recordBytes;
      }
    } else this.truncated = true;
    return changed ? encodeDataRow(changed) : undefined;
  }

  /** Masks one cell: the value to send (or UNCHANGED) and its text as the agent receives it. */
  #mask(masker: ProfileMasker, column: Column, value: Buffer): [Buffer | string | null | typeof UNCHANGED, string | null] {
    if (!column.binary) {
      const text = value.toString('utf8');
      const masked = masker.maskCell(text, column.info, this.counts);
      return masked === text ? [UNCHANGED, text] : [masked, masked];
    }
    // Binary cells: the engine knows each type's wire form; a type that cannot carry a masked
    // value comes back as null (SQL NULL), never as bytes the client could not decode.
    const masked = masker.maskBinaryCell(value, column.info, this.counts);
    if (masked === value) return [UNCHANGED, binaryText(column.typeOid, value)];
    if (masked === null) return [null, null];
    const bytes = Buffer.isBuffer(masked) ? masked : Buffer.from(masked.buffer, masked.byteOffset, masked.byteLength);
    return [bytes, binaryText(column.typeOid, bytes)];
  }

}

/** The columns of a COPY TO's lines as lineage gives them, and how the lines are written. */
export interface CopyColumns {
  readonly columns: readonly ColumnInfo[];
  readonly format: CopyFormat;
}

/**
 * COPY TO STDOUT data. Text and CSV rows arrive one line per CopyData. The column names are not
 * on the wire: where the statement's lineage gives the columns, a line is split into its fields
 * and column rules apply to each as to a result column (a COPY of a whole table: any column of
 * it); the whole line is then scanned with the profile's detectors too.
 */
export class CopyOutSet extends RecordedRows {
  readonly #ruled: readonly boolean[] | undefined;
  #header: boolean;

  constructor(
    readonly binary: boolean,
    readonly masker: ProfileMasker | undefined,
    limits: RecordingLimits,
    readonly columns?: CopyColumns,
  ) {
    super(limits);
    if (binary && masker) throw new ResultWithheldError('binary COPY cannot be masked');
    // With the profile's column rules known per field, even a field no rule covers is split out
    // when it holds a document: its members are covered by key (`"ssn": …`), as in a result column.
    this.#ruled = masker && columns ? columns.columns.map((column) => masker.hasColumnRule(column)) : undefined;
    this.#header = columns?.format.header ?? false;
  }

  /** Returns a re-encoded CopyData message when the line changed. */
  data(payload: Buffer): Buffer | undefined {
    this.rowCount++;
    this.bytes += payload.length;
    const recording = !this.truncated && this.rows.length < this.limits.maxRows && this.recordedBytes < this.limits.maxBytes;
    if (!this.masker && !recording) {
      this.truncated = true;
      return undefined;
    }
    const line = this.binary ? hex(payload) : payload.toString('utf8');
    let sent = line;
    let out: Buffer | undefined;
    if (this.masker) {
      const header = this.#header;
      this.#header = false;
      const ruled = header ? line : this.#maskColumns(this.masker, line);
      sent = this.masker.maskText(ruled, this.counts);
      if (sent !== line) out = encodeCopyData(sent);
    }
    if (recording) {
      const text = sent.endsWith('\n') ? sent.slice(0, -1) : sent;
      this.rows.push([text]);
      this.recordedBytes += text.length;
    } else this.truncated = true;
    return out;
  }

  /** Applies column rules field by field; a line that cannot be split with certainty is withheld. */
  #maskColumns(masker: ProfileMasker, line: string): string {
    const ruled = this.#ruled;
    const columns = this.columns;
    if (!ruled || !columns) return line;
    if (!ruled.some(Boolean) && !line.includes('{') && !line.includes('[')) return line;
    const newline = line.endsWith('\n') ? '\n' : '';
    const fields = splitCopyLine(newline ? line.slice(0, -1) : line, columns.format);
    if (!fields || fields.length !== columns.columns.length) throw new ResultWithheldError('a COPY line does not match its columns');
    return (
      fields
        .map((field, index) => {
          if (field.value === undefined || !(ruled[index] || looksLikeJson(field.value))) return field.raw;
          return writeCopyField(masker.maskCell(field.value, columns.columns[index], this.counts), columns.format);
        })
        .join(columns.format.delimiter) + newline
    );
  }

  override get columnNames(): string[] {
    return ['copy'];
  }
}
