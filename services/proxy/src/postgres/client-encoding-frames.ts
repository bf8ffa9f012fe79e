/**
 * The client edge of a non-UTF8 session: frontend messages decoded from the agent's encoding into
 * UTF-8 before the session reads them, backend messages encoded into it after masking. Only
 * sessions whose agent asked for another encoding build one: a UTF8 agent's bytes never pass here.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 * @see https://www.postgresql.org/docs/current/multibyte.html#MULTIBYTE-AUTOMATIC-CONVERSION
 */
import { BackendCode, decodeNoticeFields, encodeNoticeFields, FrontendCode, type FieldDescription, type Frame } from '@sluice/codec-pg';
import { EncodingConversionError, type ClientEncoding } from './client-encoding.js';
import { Outbox } from './outbox.js';

/** Binary-format types whose value holds no text: passed as they are. */
const BINARY_WITHOUT_TEXT: ReadonlySet<number> = new Set([
  16, 17, 18, 20, 21, 23, 24, 26, 27, 28, 29, 600, 601, 602, 603, 604, 628, 650, 700, 701, 718, 774, 790, 829, 869,
  1082, 1083, 1114, 1184, 1186, 1266, 1560, 1562, 1700, 2202, 2203, 2204, 2205, 2206, 2950, 3220, 3734, 3769, 4089, 4096,
]);
/** Plain text types: their binary form is the text itself, converted by the server as the text form is. */
const BINARY_TEXT: ReadonlySet<number> = new Set([19, 25, 114, 142, 705, 1042, 1043, 2275]);
/** jsonb's binary form: a version byte, then the text. */
const JSONB = 3802;

const frame = (code: number, body: Buffer): Frame => {
  const raw = Buffer.allocUnsafe(body.length + 5);
  raw[0] = code;
  raw.writeInt32BE(body.length + 4, 1);
  body.copy(raw, 5);
  return { code, body: raw.subarray(5), raw };
};

/** Whether a message needs no conversion at all: ASCII reads the same in every client encoding PostgreSQL has. */
const hasHighByte = (bytes: Uint8Array): boolean => {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! >= 0x80) return true;
  return false;
};

/** Reads a message body field by field and writes the converted one. */
class Rewriter {
  #at = 0;
  readonly #parts: Buffer[] = [];
  constructor(readonly body: Buffer) {}

  /** A NUL-terminated string, converted. */
  string(convert: (bytes: Buffer) => Buffer): void {
    const end = this.body.indexOf(0, this.#at);
    if (end < 0) throw new EncodingConversionError('08P01', 'invalid message format');
    this.#parts.push(convert(this.body.subarray(this.#at, end)), Buffer.from([0]));
    this.#at = end + 1;
  }

  /** `n` bytes as they are. */
  copy(n: number): void {
    if (this.#at + n > this.body.length) throw new EncodingConversionError('08P01', 'invalid message format');
    this.#parts.push(this.body.subarray(this.#at, this.#at + n));
    this.#at += n;
  }

  int16(): number {
    const value = this.body.readInt16BE(this.#at);
    this.copy(2);
    return value;
  }

  /** A length-prefixed value (-1: NULL), converted by `convert`. */
  value(convert: (bytes: Buffer) => Buffer): void {
    const length = this.body.readInt32BE(this.#at);
    this.#at += 4;
    if (length < 0) {
      this.#parts.push(Buffer.from([0xff, 0xff, 0xff, 0xff]));
      return;
    }
    const converted = convert(this.body.subarray(this.#at, this.#at + length));
    const header = Buffer.allocUnsafe(4);
    header.writeInt32BE(converted.length, 0);
    this.#parts.push(header, converted);
    this.#at += length;
  }

  rest(): Buffer {
    this.#parts.push(this.body.subarray(this.#at));
    return Buffer.concat(this.#parts);
  }
}

const NEWLINE = 0x0a;
/** Statements whose declared parameter types the edge keeps. */
const MAX_STATEMENT_TYPES = 1024;

/**
 * One session's conversion state: the encoding, the parameter types of its Parse'd statements
 * (binary parameters are converted by type) and the COPY under way.
 */
export class ClientEdge {
  /** Declared parameter types of the statements Parse'd through this edge, by name. */
  readonly #parameterTypes = new Map<string, number[]>();
  /** COPY FROM STDIN: binary or not, the agent's bytes after the last newline, and whether it already failed. */
  #copyIn: { binary: boolean; pending: Buffer; failed: boolean } | undefined;
  #copyOutBinary = false;
  /** The message of the CopyFail the edge sent in the agent's name: the server's error for it is reworded as ours. */
  #copyFailure: { code: string; message: string } | undefined;

  constructor(readonly encoding: ClientEncoding) {}

  // ------------------------------------------------------------ agent -> target

  /**
   * A frontend message as UTF-8. Undefined: nothing goes on for it (COPY data after a failed
   * conversion, which the server would drop). Throws EncodingConversionError with the server's
   * SQLSTATE for bytes that are not valid in the encoding.
   */
  fromClient(message: Frame): Frame | undefined {
    switch (message.code) {
      case FrontendCode.CopyData:
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        return this.#copyData(message);
      default:
        break;
    }
    if (!hasHighByte(message.body) && message.code !== FrontendCode.Parse && message.code !== FrontendCode.Bind) return message;
    const toUtf8 = (bytes: Buffer): Buffer => this.encoding.toUtf8(bytes);
    const body = new Rewriter(message.body);
    switch (message.code) {
      case FrontendCode.Query:
        body.string(toUtf8);
        break;
      case FrontendCode.Parse: {
        const start = message.body.indexOf(0);
        body.string(toUtf8);
        body.string(toUtf8);
        const count = body.int16();
        const types: number[] = [];
        for (let i = 0; i < count; i++) types.push(message.body.readUInt32BE(message.body.length - 4 * (count - i)));
        const name = message.body.subarray(0, start).toString('latin1');
        this.#parameterTypes.delete(name);
        // Bounded: a statement whose types were dropped has its binary parameters refused, not guessed.
        if (this.#parameterTypes.size >= MAX_STATEMENT_TYPES) this.#parameterTypes.delete(this.#parameterTypes.keys().next().value!);
        this.#parameterTypes.set(name, types);
        if (!hasHighByte(message.body)) return message;
        break;
      }
      case FrontendCode.Bind:
        if (!this.#bind(message, body, toUtf8)) return message;
        break;
      case FrontendCode.Describe:
      case FrontendCode.Close:
        body.copy(1);
        body.string(toUtf8);
        break;
      case FrontendCode.Execute:
        body.string(toUtf8);
        break;
      default:
        return message;
    }
    return frame(message.code, body.rest());
  }

  /** Converts a Bind's names and parameters; false when it carries nothing to convert. */
  #bind(message: Frame, body: Rewriter, toUtf8: (bytes: Buffer) => Buffer): boolean {
    const portalEnd = message.body.indexOf(0);
    const statementEnd = message.body.indexOf(0, portalEnd + 1);
    const types = this.#parameterTypes.get(message.body.subarray(portalEnd + 1, statementEnd).toString('latin1')) ?? [];
    const high = hasHighByte(message.body);
    body.string(toUtf8);
    body.string(toUtf8);
    const formatCount = body.int16();
    const formats: number[] = [];
    for (let i = 0; i < formatCount; i++) formats.push(body.int16());
    const count = body.int16();
    let binary = false;
    for (let i = 0; i < count; i++) {
      const format = formatCount === 0 ? 0 : formatCount === 1 ? formats[0]! : (formats[i] ?? 0);
      if (format === 0) {
        body.value(toUtf8);
        continue;
      }
      binary = true;
      const type = types[i] ?? 0;
      body.value((bytes) => this.#binary(type, bytes, toUtf8, `parameter $${i + 1}`));
    }
    return high || binary;
  }

  /** A binary-format value of `type`: text types converted, types without text as they are, anything else refused. */
  #binary(type: number, bytes: Buffer, convert: (bytes: Buffer) => Buffer, what: string): Buffer {
    if (BINARY_WITHOUT_TEXT.has(type)) return bytes;
    if (BINARY_TEXT.has(type)) return convert(bytes);
    if (type === JSONB && bytes.length > 0) return Buffer.concat([bytes.subarray(0, 1), convert(bytes.subarray(1))]);
    if (!hasHighByte(bytes)) return bytes;
    throw new EncodingConversionError(
      '0A000',
      `binary-format ${what} of type ${type} cannot be converted to client_encoding ${this.encoding.name} through sluice: use the text format`,
    );
  }

  /**
   * COPY FROM STDIN data arrives in chunks that may split a character: converted up to the last
   * newline (never inside a character in any client encoding PostgreSQL has), the rest with the
   * next chunk. A conversion error fails the COPY as the server would, with a CopyFail.
   */
  #copyData(message: Frame): Frame | undefined {
    const copy = this.#copyIn;
    if (!copy) return message;
    if (copy.failed) {
      if (message.code !== FrontendCode.CopyData) this.#copyIn = undefined;
      return undefined;
    }
    if (message.code === FrontendCode.CopyFail) {
      this.#copyIn = undefined;
      return frame(message.code, this.#lossyString(message.body));
    }
    try {
      if (copy.binary) {
        throw new EncodingConversionError('0A000', `binary COPY FROM STDIN cannot be converted from client_encoding ${this.encoding.name} through sluice: use the text or csv format`);
      }
      if (message.code === FrontendCode.CopyDone) {
        this.#copyIn = undefined;
        if (copy.pending.length === 0) return message;
        const data = frame(FrontendCode.CopyData, this.encoding.toUtf8(copy.pending));
        return { code: message.code, body: message.body, raw: Buffer.concat([data.raw, message.raw]) };
      }
      const bytes = copy.pending.length > 0 ? Buffer.concat([copy.pending, message.body]) : message.body;
      const end = bytes.lastIndexOf(NEWLINE) + 1;
      copy.pending = Buffer.from(bytes.subarray(end));
      return frame(FrontendCode.CopyData, this.encoding.toUtf8(bytes.subarray(0, end)));
    } catch (error) {
      if (!(error instanceof EncodingConversionError)) throw error;
      copy.failed = message.code === FrontendCode.CopyData;
      if (!copy.failed) this.#copyIn = undefined;
      this.#copyFailure = { code: error.sqlstate, message: error.message };
      return frame(FrontendCode.CopyFail, Buffer.concat([Buffer.from(error.message, 'utf8'), Buffer.from([0])]));
    }
  }

  #lossyString(body: Buffer): Buffer {
    const end = body.indexOf(0);
    return Buffer.concat([Buffer.from(this.#lossyText(body.subarray(0, end < 0 ? body.length : end)), 'utf8'), Buffer.from([0])]);
  }

  #lossyText(bytes: Buffer): string {
    try {
      return this.encoding.decode(bytes);
    } catch {
      return bytes.toString('latin1').replace(/[^\x20-\x7e]/g, '?');
    }
  }

  // ------------------------------------------------------------ target -> agent

  /**
   * A backend message in the agent's encoding. `fields`: the columns of a DataRow. Throws
   * EncodingConversionError where the server would raise one (a character without an
   * equivalent, 22P05) or where the proxy cannot convert a value (0A000).
   */
  toClient(message: Buffer, fields: readonly FieldDescription[] | undefined): Buffer {
    const code = message[0]!;
    const body = message.subarray(5);
    if (code === BackendCode.ParameterStatus) return this.#parameterStatus(body);
    if (code === BackendCode.CopyOutResponse) this.#copyOutBinary = body[0] === 1;
    if (code === BackendCode.CopyInResponse) this.#copyIn = { binary: body[0] === 1, pending: Buffer.alloc(0), failed: false };
    if (code === BackendCode.ErrorResponse && this.#copyFailure) return this.#notice(code, body, this.#copyFailure);
    if (!hasHighByte(body)) return message;
    const fromUtf8 = (bytes: Buffer): Buffer => this.encoding.fromUtf8(bytes);
    const out = new Rewriter(body);
    switch (code) {
      case BackendCode.DataRow: {
        const count = out.int16();
        for (let i = 0; i < count; i++) {
          const field = fields?.[i];
          if (!field || field.format === 0) out.value(fromUtf8);
          else out.value((bytes) => this.#binary(field.typeOid, bytes, fromUtf8, `column "${field.name}"`));
        }
        break;
      }
      case BackendCode.RowDescription: {
        const count = out.int16();
        for (let i = 0; i < count; i++) {
          out.string(fromUtf8);
          out.copy(18);
        }
        break;
      }
      case BackendCode.CommandComplete:
        out.string(fromUtf8);
        break;
      case BackendCode.ErrorResponse:
      case BackendCode.NoticeResponse:
        return this.#notice(code, body, undefined);
      case BackendCode.NotificationResponse:
        out.copy(4);
        out.string((bytes) => this.encoding.encodeLossy(bytes.toString('utf8')));
        out.string((bytes) => this.encoding.encodeLossy(bytes.toString('utf8')));
        break;
      case BackendCode.CopyData:
        if (this.#copyOutBinary) {
          throw new EncodingConversionError('0A000', `binary COPY TO STDOUT cannot be converted to client_encoding ${this.encoding.name} through sluice: use the text or csv format`);
        }
        return frame(code, fromUtf8(body)).raw;
      default:
        return message;
    }
    return frame(code, out.rest()).raw;
  }

  /** client_encoding reads as the agent's encoding, as the server reports it to a direct client. */
  #parameterStatus(body: Buffer): Buffer {
    const nameEnd = body.indexOf(0);
    const name = body.subarray(0, nameEnd).toString('utf8');
    const value = name === 'client_encoding' ? this.encoding.name : body.subarray(nameEnd + 1, Math.max(nameEnd + 1, body.length - 1)).toString('utf8');
    return frame(BackendCode.ParameterStatus, Buffer.concat([Buffer.from(name, 'latin1'), Buffer.from([0]), this.encoding.encodeLossy(value), Buffer.from([0])])).raw;
  }

  /**
   * An ErrorResponse or NoticeResponse: every field in the agent's encoding, a character without an
   * equivalent as `?` (the agent must get the error whole). `replace`: the code and message of a
   * COPY the edge failed, in place of the server's "COPY from stdin failed: <them>" (only that error).
   */
  #notice(code: number, body: Buffer, replace: { code: string; message: string } | undefined): Buffer {
    const parts: Buffer[] = [];
    let replaced = false;
    let at = 0;
    while (at < body.length && body[at] !== 0) {
      const type = String.fromCharCode(body[at]!);
      const end = body.indexOf(0, at + 1);
      if (end < 0) break;
      parts.push(Buffer.from([body[at]!]), this.encoding.encodeLossy(body.subarray(at + 1, end).toString('utf8')), Buffer.from([0]));
      if (replace && type === 'M' && body.subarray(at + 1, end).toString('utf8') === `COPY from stdin failed: ${replace.message}`) replaced = true;
      at = end + 1;
    }
    if (replaced && replace) {
      // The server's error for the CopyFail the edge sent: the agent gets the conversion error itself.
      this.#copyFailure = undefined;
      const fields = decodeNoticeFields(body, code === BackendCode.ErrorResponse ? 'ErrorResponse' : 'NoticeResponse');
      return this.toClient(encodeNoticeFields(BackendCode.ErrorResponse, { ...fields, C: replace.code, M: replace.message }), undefined);
    }
    parts.push(Buffer.from([0]));
    return frame(code, Buffer.concat(parts)).raw;
  }
}

/**
 * The session's outbox to the agent: each message converted by the edge in force when it is
 * pushed (a SET client_encoding switches it between one message and the next, as on the server).
 * With no edge (UTF8, SQL_ASCII) messages go as they are.
 */
export class ClientOutbox extends Outbox {
  edge: ClientEdge | undefined;
  /** The columns of the DataRows pushed next. */
  rowFields: readonly FieldDescription[] | undefined;

  override push(buffer: Buffer): void {
    const edge = this.edge;
    super.push(edge ? edge.toClient(buffer, this.rowFields) : buffer);
  }
}
