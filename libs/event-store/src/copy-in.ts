import type pg from 'pg';

/** Fields of one row in COPY's text format: strings, numbers, or null (written \N). */
export type CopyField = string | number | null;

const SPECIAL = /[\\\n\r\t]/;
const SPECIALS = /[\\\n\r\t]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

const field = (value: CopyField | undefined): string => {
  // undefined too (a foreign event without a required attribute): NULL, which the NOT NULL
  // columns refuse, as the INSERT did, rather than an empty string the chain did not hash.
  if (value === null || value === undefined) return '\\N';
  if (typeof value !== 'string') return String(value);
  return SPECIAL.test(value) ? value.replace(SPECIALS, (char) => ESCAPES[char]!) : value;
};

/** Rows per CopyData message (~0.5 MB of events). */
const ROWS_PER_CHUNK = 1000;

/**
 * COPY … FROM STDIN on a pg client, without pg-copy-streams: the few protocol hooks pg's
 * Client calls on a query object (what that package implements). All rows are in memory
 * already, so there is no stream, only the CopyData messages and CopyDone.
 */
class CopyIn {
  private error: Error | undefined;
  constructor(
    private readonly text: string,
    private readonly chunks: readonly Buffer[],
    private readonly settle: (error?: Error) => void,
  ) {}
  submit(connection: CopyConnection): void {
    connection.query(this.text);
  }
  handleCopyInResponse(connection: CopyConnection): void {
    for (const chunk of this.chunks) connection.sendCopyFromChunk(chunk);
    connection.endCopyFrom();
  }
  handleCommandComplete(): void {}
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
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/** Writes rows with `COPY <target> FROM STDIN` (text format) on a connected client. */
export const copyRows = (client: pg.PoolClient, target: string, rows: readonly (readonly CopyField[])[]): Promise<void> => {
  const chunks: Buffer[] = [];
  for (let start = 0; start < rows.length; start += ROWS_PER_CHUNK) {
    let text = '';
    for (const row of rows.slice(start, start + ROWS_PER_CHUNK)) text += `${row.map(field).join('\t')}\n`;
    chunks.push(Buffer.from(text, 'utf8'));
  }
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const copy = new CopyIn(`COPY ${target} FROM STDIN`, chunks, (error) => {
      if (settled) return;
      settled = true;
      if (error) reject(error);
      else resolve();
    });
    (client as unknown as { query(query: CopyIn): void }).query(copy);
  });
};
