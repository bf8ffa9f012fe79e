import { AuthCode, BackendCode, ErrorField, FrontendCode, StartupCode } from './codes.js';

/**
 * Encoders for the messages the proxy writes: its own answers to clients and its own requests to
 * the target. Forwarded messages are passed through as raw bytes and never re-encoded.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

/** Grows as needed; writes a typed message (code + length placeholder) in one buffer. */
class MessageWriter {
  #buffer: Buffer;
  #offset = 0;

  constructor(size = 256) {
    this.#buffer = Buffer.allocUnsafe(size);
  }

  #ensure(bytes: number): void {
    if (this.#offset + bytes <= this.#buffer.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buffer.length * 2, this.#offset + bytes));
    this.#buffer.copy(next, 0, 0, this.#offset);
    this.#buffer = next;
  }

  byte(value: number): this {
    this.#ensure(1);
    this.#buffer[this.#offset++] = value;
    return this;
  }

  int16(value: number): this {
    this.#ensure(2);
    this.#buffer.writeInt16BE(value, this.#offset);
    this.#offset += 2;
    return this;
  }

  int32(value: number): this {
    this.#ensure(4);
    this.#buffer.writeInt32BE(value, this.#offset);
    this.#offset += 4;
    return this;
  }

  cstring(value: string): this {
    const length = Buffer.byteLength(value);
    this.#ensure(length + 1);
    this.#buffer.write(value, this.#offset, 'utf8');
    this.#offset += length;
    this.#buffer[this.#offset++] = 0;
    return this;
  }

  bytes(value: Buffer): this {
    this.#ensure(value.length);
    value.copy(this.#buffer, this.#offset);
    this.#offset += value.length;
    return this;
  }

  /** Finishes a message: `code` 0 writes an untyped (startup-phase) packet. */
  finish(code: number): Buffer {
    const header = code === 0 ? 4 : 5;
    const out = Buffer.allocUnsafe(header + this.#offset);
    if (code !== 0) out[0] = code;
    out.writeUInt32BE(this.#offset + 4, header - 4);
    this.#buffer.copy(out, header, 0, this.#offset);
    return out;
  }
}

const bare = (code: number): Buffer => {
  const out = Buffer.allocUnsafe(5);
  out[0] = code;
  out.writeUInt32BE(4, 1);
  return out;
};

// ---- backend messages (proxy -> client) ----

export interface ErrorDescription {
  /** ERROR, FATAL, PANIC (errors) or WARNING, NOTICE, … (notices). */
  readonly severity: string;
  /** SQLSTATE, e.g. 42501. */
  readonly code: string;
  readonly message: string;
  readonly detail?: string;
  readonly hint?: string;
}

const noticeBody = (error: ErrorDescription): MessageWriter => {
  const w = new MessageWriter(64 + error.message.length * 3);
  w.byte(ErrorField.Severity).cstring(error.severity);
  w.byte(ErrorField.SeverityNonLocalized).cstring(error.severity);
  w.byte(ErrorField.Code).cstring(error.code);
  w.byte(ErrorField.Message).cstring(error.message);
  if (error.detail !== undefined) w.byte(ErrorField.Detail).cstring(error.detail);
  if (error.hint !== undefined) w.byte(ErrorField.Hint).cstring(error.hint);
  return w.byte(0);
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-ERRORRESPONSE */
export const encodeErrorResponse = (error: ErrorDescription): Buffer => noticeBody(error).finish(BackendCode.ErrorResponse);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NOTICERESPONSE */
export const encodeNoticeResponse = (notice: ErrorDescription): Buffer => noticeBody(notice).finish(BackendCode.NoticeResponse);

/**
 * Re-encodes ErrorResponse / NoticeResponse fields as decoded (keyed by field type character),
 * e.g. after masking values in them.
 * @see https://www.postgresql.org/docs/current/protocol-error-fields.html
 */
export const encodeNoticeFields = (code: typeof BackendCode.ErrorResponse | typeof BackendCode.NoticeResponse, fields: Readonly<Record<string, string>>): Buffer => {
  const w = new MessageWriter();
  for (const [type, value] of Object.entries(fields)) {
    if (type.length === 1) w.byte(type.charCodeAt(0)).cstring(value);
  }
  return w.byte(0).finish(code);
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NOTIFICATIONRESPONSE */
export const encodeNotificationResponse = (processId: number, channel: string, payload: string): Buffer =>
  new MessageWriter().int32(processId).cstring(channel).cstring(payload).finish(BackendCode.NotificationResponse);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-READYFORQUERY */
export const encodeReadyForQuery = (status: number): Buffer => {
  const out = Buffer.allocUnsafe(6);
  out[0] = BackendCode.ReadyForQuery;
  out.writeUInt32BE(5, 1);
  out[5] = status;
  return out;
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONCLEARTEXTPASSWORD */
export const encodeAuthenticationCleartextPassword = (): Buffer => new MessageWriter(4).int32(AuthCode.CleartextPassword).finish(BackendCode.Authentication);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONOK */
export const encodeAuthenticationOk = (): Buffer => new MessageWriter(4).int32(AuthCode.Ok).finish(BackendCode.Authentication);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONMD5PASSWORD */
export const encodeAuthenticationMD5Password = (salt: Buffer): Buffer =>
  new MessageWriter(8).int32(AuthCode.MD5Password).bytes(salt).finish(BackendCode.Authentication);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONSASL */
export const encodeAuthenticationSASL = (mechanisms: readonly string[]): Buffer => {
  const w = new MessageWriter().int32(AuthCode.SASL);
  for (const m of mechanisms) w.cstring(m);
  return w.byte(0).finish(BackendCode.Authentication);
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONSASLCONTINUE */
export const encodeAuthenticationSASLContinue = (data: Buffer): Buffer =>
  new MessageWriter().int32(AuthCode.SASLContinue).bytes(data).finish(BackendCode.Authentication);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONSASLFINAL */
export const encodeAuthenticationSASLFinal = (data: Buffer): Buffer =>
  new MessageWriter().int32(AuthCode.SASLFinal).bytes(data).finish(BackendCode.Authentication);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PARAMETERSTATUS */
export const encodeParameterStatus = (name: string, value: string): Buffer =>
  new MessageWriter(name.length + value.length + 2).cstring(name).cstring(value).finish(BackendCode.ParameterStatus);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NEGOTIATEPROTOCOLVERSION */
export const encodeNegotiateProtocolVersion = (minorVersion: number, unrecognized: readonly string[]): Buffer => {
  const w = new MessageWriter().int32(minorVersion).int32(unrecognized.length);
  for (const option of unrecognized) w.cstring(option);
  return w.finish(BackendCode.NegotiateProtocolVersion);
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-BACKENDKEYDATA */
export const encodeBackendKeyData = (processId: number, secretKey: number): Buffer =>
  new MessageWriter(8).int32(processId).int32(secretKey).finish(BackendCode.BackendKeyData);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COMMANDCOMPLETE */
export const encodeCommandComplete = (tag: string): Buffer => new MessageWriter(tag.length + 1).cstring(tag).finish(BackendCode.CommandComplete);

export const encodeEmptyQueryResponse = (): Buffer => bare(BackendCode.EmptyQueryResponse);
export const encodeParseComplete = (): Buffer => bare(BackendCode.ParseComplete);
export const encodeBindComplete = (): Buffer => bare(BackendCode.BindComplete);
export const encodeNoData = (): Buffer => bare(BackendCode.NoData);

export interface FieldSpec {
  readonly name: string;
  readonly tableOid?: number;
  readonly attnum?: number;
  readonly typeOid: number;
  readonly typeSize?: number;
  readonly typeModifier?: number;
  readonly format?: number;
}

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-ROWDESCRIPTION */
export const encodeRowDescription = (fields: readonly FieldSpec[]): Buffer => {
  const w = new MessageWriter().int16(fields.length);
  for (const f of fields) {
    w.cstring(f.name)
      .int32(f.tableOid ?? 0)
      .int16(f.attnum ?? 0)
      .int32(f.typeOid)
      .int16(f.typeSize ?? -1)
      .int32(f.typeModifier ?? -1)
      .int16(f.format ?? 0);
  }
  return w.finish(BackendCode.RowDescription);
};

/**
 * Re-encodes a DataRow with new values (null: SQL NULL, length -1), sized exactly in one
 * allocation. Strings are written as UTF-8.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-DATAROW
 */
export const encodeDataRow = (values: readonly (Buffer | string | null)[]): Buffer => {
  let size = 7; // code, length, count
  const n = values.length;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    size += 4;
    if (v === null || v === undefined) continue;
    size += typeof v === 'string' ? Buffer.byteLength(v) : v.length;
  }
  const out = Buffer.allocUnsafe(size);
  out[0] = BackendCode.DataRow;
  out.writeUInt32BE(size - 1, 1);
  out.writeInt16BE(n, 5);
  let offset = 7;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v === null || v === undefined) {
      out.writeInt32BE(-1, offset);
      offset += 4;
    } else if (typeof v === 'string') {
      const written = out.write(v, offset + 4, 'utf8');
      out.writeInt32BE(written, offset);
      offset += 4 + written;
    } else {
      out.writeInt32BE(v.length, offset);
      v.copy(out, offset + 4);
      offset += 4 + v.length;
    }
  }
  return out;
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COPYDATA */
export const encodeCopyData = (data: Buffer | string): Buffer => {
  const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = BackendCode.CopyData;
  out.writeUInt32BE(4 + payload.length, 1);
  payload.copy(out, 5);
  return out;
};

// ---- frontend messages (proxy -> target) ----

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-STARTUPMESSAGE */
export const encodeStartupMessage = (parameters: Iterable<readonly [string, string | Buffer]>): Buffer => {
  const w = new MessageWriter().int32(StartupCode.ProtocolVersion3);
  // A value given as bytes goes as it is (a client's own, in whatever encoding it wrote it).
  for (const [name, value] of parameters) {
    w.cstring(name);
    if (typeof value === 'string') w.cstring(value);
    else w.bytes(value).byte(0);
  }
  return w.byte(0).finish(0);
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SSLREQUEST */
export const encodeSSLRequest = (): Buffer => new MessageWriter(4).int32(StartupCode.SSLRequest).finish(0);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-CANCELREQUEST */
export const encodeCancelRequest = (processId: number, secretKey: number): Buffer =>
  new MessageWriter(12).int32(StartupCode.CancelRequest).int32(processId).int32(secretKey).finish(0);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PASSWORDMESSAGE */
export const encodePasswordMessage = (password: string): Buffer => new MessageWriter().cstring(password).finish(FrontendCode.Password);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SASLINITIALRESPONSE */
export const encodeSASLInitialResponse = (mechanism: string, response: Buffer): Buffer =>
  new MessageWriter().cstring(mechanism).int32(response.length).bytes(response).finish(FrontendCode.Password);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SASLRESPONSE */
export const encodeSASLResponse = (response: Buffer): Buffer => new MessageWriter().bytes(response).finish(FrontendCode.Password);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-QUERY */
export const encodeQuery = (text: string): Buffer => new MessageWriter(text.length + 1).cstring(text).finish(FrontendCode.Query);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-DESCRIBE */
export const encodeDescribe = (target: 'S' | 'P', name: string): Buffer =>
  new MessageWriter(name.length + 2).byte(target.charCodeAt(0)).cstring(name).finish(FrontendCode.Describe);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SYNC */
export const encodeSync = (): Buffer => bare(FrontendCode.Sync);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COPYDONE */
export const encodeCopyDone = (): Buffer => bare(FrontendCode.CopyDone);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COPYFAIL */
export const encodeCopyFail = (message: string): Buffer => new MessageWriter(message.length + 1).cstring(message).finish(FrontendCode.CopyFail);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-TERMINATE */
export const encodeTerminate = (): Buffer => bare(FrontendCode.Terminate);

/**
 * Parse without parameter types.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PARSE
 */
export const encodeParse = (name: string, text: string): Buffer =>
  new MessageWriter(name.length + text.length + 4).cstring(name).cstring(text).int16(0).finish(FrontendCode.Parse);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-FLUSH */
export const encodeFlush = (): Buffer => bare(FrontendCode.Flush);

/**
 * Bind without parameters, all results in text.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-BIND
 */
/** Bind with its parameters in text (null for NULL) and its result columns' formats (none: all text). */
export const encodeBind = (portal: string, statement: string, parameters: readonly (string | null)[] = [], resultFormats: readonly number[] = []): Buffer => {
  const writer = new MessageWriter(portal.length + statement.length + 8).cstring(portal).cstring(statement).int16(0).int16(parameters.length);
  for (const parameter of parameters) {
    if (parameter === null) writer.int32(-1);
    else {
      const bytes = Buffer.from(parameter, 'utf8');
      writer.int32(bytes.length).bytes(bytes);
    }
  }
  writer.int16(resultFormats.length);
  for (const format of resultFormats) writer.int16(format);
  return writer.finish(FrontendCode.Bind);
};

/** `maxRows` 0: all rows. @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-EXECUTE */
export const encodeExecute = (portal: string, maxRows = 0): Buffer => new MessageWriter(portal.length + 5).cstring(portal).int32(maxRows).finish(FrontendCode.Execute);

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-CLOSE */
export const encodeClose = (target: 'S' | 'P', name: string): Buffer =>
  new MessageWriter(name.length + 2).byte(target.charCodeAt(0)).cstring(name).finish(FrontendCode.Close);
