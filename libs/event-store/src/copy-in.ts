import type pg from 'pg';

/** Fields of one row in COPY's text format: strings, numbers, or null (written \N). */
export type CopyField = string | number | null;

const SPECIAL = /[\\\n\r\t]/;
const SPECIALS = /[\\\n\r\t]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** One field in COPY's text format. */
export const copyField = (value: CopyField | undefined): string => {
  // undefined too (a foreign event without a required attribute): NULL, which the NOT NULL
  // columns refuse, as the INSERT did, rather than an empty string the chain did not hash.
  if (value === null || value === undefined) return '\\N';
  if (typeof value !== 'string') return String(value);
  return SPECIAL.test(value) ? value.replace(SPECIALS, (char) => ESCAPES[char]!) : value;
};

/**
 * A JSON text as one field in COPY's text format. JSON.stringify escapes every control
 * character, so of COPY's specials only the backslash can occur: a native search for it costs
 * far less than copyField's regular expression over the longest field of every row.
 */
export const copyJsonField = (json: string | null): string => {
  if (json === null) return '\\N';
  return json.includes('\\') ? json.replaceAll('\\', '\\\\') : json;
};

class CopyIn {
  private error: Error | undefined;
  constructor(
    private readonly text: string,
    private readonly chunks: readonly Buffer[],
    private readonly settle: (error?: Error) => void,
  ) {}
  /**
   * The statement, every CopyData and CopyDone in one write, not waiting for CopyInResponse: a
   * round trip (and a wake-up of each side) less per batch. Should the statement fail before
   * copy-in mode, the server ignores the CopyData and CopyDone that follow ("accept but ignore
   * these messages, per protocol spec", PostgresMain in postgres.c).
   * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY
   */
  submit(connection: CopyConnection): void {
    const { stream } = connection;
    stream.cork();
    connection.query(this.text);
    // A closed socket is left to pg, which fails the query on its error (as its own _send does).
    for (const chunk of this.chunks) if (stream.writable) stream.write(chunk);
    connection.endCopyFrom();
    stream.uncork();
  }
  handleCopyInResponse(): void {}
  handleCommandComplete(): void {}
  // Statements before the COPY in the same Query (BEGIN, the locks) may answer with rows: unread.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handleError(error: Error): void {
    // The server follows an ErrorResponse with ReadyForQuery, but a dead connection does not.
    this.error ??= error;
    this.settle(error);
  }
  handleReadyForQuery(): void {
    this.settle(this.error);
  }
}

interface CopyConnection {
  readonly stream: { readonly writable: boolean; write(chunk: Buffer): boolean; cork(): void; uncork(): void };
  query(text: string): void;
  endCopyFrom(): void;
}

/** A CopyData message's bytes before its data: 'd' and the Int32 length. */
export const COPY_DATA_HEADER_BYTES = 5;

/**
 * A CopyData message ('d', Int32 length, the bytes) with room for `length` bytes of data, which
 * the caller writes from COPY_DATA_HEADER_BYTES on.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COPYDATA
 */
export const allocCopyData = (length: number): Buffer => {
  const message = Buffer.allocUnsafe(COPY_DATA_HEADER_BYTES + length);
  message[0] = 0x64; // 'd'
  message.writeInt32BE(4 + length, 1);
  return message;
};

/** A CopyData message's header alone, for `length` bytes of data sent as the chunk after it. */
export const copyDataHeader = (length: number): Buffer => {
  const header = Buffer.allocUnsafe(COPY_DATA_HEADER_BYTES);
  header[0] = 0x64; // 'd'
  header.writeInt32BE(4 + length, 1);
  return header;
};

/**
 * Sends COPY … FROM STDIN (text format) on a connected client, the rows already in CopyData
 * messages, without pg-copy-streams: the few protocol hooks pg's Client calls on a query object
 * (what that package implements). All rows are in memory already, so there is no stream, only the
 * CopyData messages and CopyDone. `chunks` are written back to back in one corked write, so a
 * message may be given as several (its header, then views of its data). `statement` may go on
 * after the COPY (`COPY …; COMMIT`, one simple Query): on an error the server skips the rest of it.
 */
export const copyIn = (client: pg.PoolClient, statement: string, chunks: readonly Buffer[]): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    let settled = false;
    const copy = new CopyIn(statement, chunks, (error) => {
      if (settled) return;
      settled = true;
      if (error) reject(error);
      else resolve();
    });
    (client as unknown as { query(query: CopyIn): void }).query(copy);
  });
