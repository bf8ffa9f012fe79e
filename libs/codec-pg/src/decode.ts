import { AuthCode, BackendCode, FrontendCode, StartupCode } from './codes.js';
import { ProtocolMalformedError } from './errors.js';
import type {
  AuthenticationMessage,
  BackendMessage,
  DescribeTarget,
  FieldDescription,
  Frame,
  FrontendMessage,
  NoticeFields,
  StartupPhaseMessage,
} from './messages.js';

const FORMATS = 'https://www.postgresql.org/docs/current/protocol-message-formats.html';

/** A bounds-checked cursor over one message body: every overrun is ProtocolMalformedError. */
export class BodyReader {
  offset = 0;
  constructor(
    readonly body: Buffer,
    readonly what: string,
  ) {}

  #need(bytes: number): void {
    if (this.offset + bytes > this.body.length) throw new ProtocolMalformedError(`${this.what}: truncated (see ${FORMATS})`);
  }

  get remaining(): number {
    return this.body.length - this.offset;
  }

  byte(): number {
    this.#need(1);
    return this.body[this.offset++]!;
  }

  int16(): number {
    this.#need(2);
    const value = this.body.readInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  uint16(): number {
    this.#need(2);
    const value = this.body.readUInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  int32(): number {
    this.#need(4);
    const value = this.body.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  uint32(): number {
    this.#need(4);
    const value = this.body.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  bytes(length: number): Buffer {
    if (length < 0) throw new ProtocolMalformedError(`${this.what}: negative length`);
    this.#need(length);
    const value = this.body.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  /** Passes over `length` bytes without a view of them. */
  skip(length: number): void {
    this.#need(length);
    this.offset += length;
  }

  /** A null-terminated string (UTF-8). */
  cstring(): string {
    const end = this.body.indexOf(0, this.offset);
    if (end < 0) throw new ProtocolMalformedError(`${this.what}: unterminated string`);
    const value = this.body.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return value;
  }

  /** A null-terminated string's bytes, undecoded (a view into the body). */
  cstringBytes(): Buffer {
    const end = this.body.indexOf(0, this.offset);
    if (end < 0) throw new ProtocolMalformedError(`${this.what}: unterminated string`);
    const value = this.body.subarray(this.offset, end);
    this.offset = end + 1;
    return value;
  }

  /** Passes over a null-terminated string without decoding it. */
  skipCstring(): void {
    const end = this.body.indexOf(0, this.offset);
    if (end < 0) throw new ProtocolMalformedError(`${this.what}: unterminated string`);
    this.offset = end + 1;
  }

  rest(): Buffer {
    const value = this.body.subarray(this.offset);
    this.offset = this.body.length;
    return value;
  }

  /**
   * A count followed by that many items; the count is checked against the bytes left first. The
   * server reads and writes these counts as unsigned 16-bit (`pq_getmsgint(msg, 2)`), so a Parse
   * or Bind of up to 65535 parameters is valid, as is its ParameterDescription.
   */
  count(minItemBytes: number): number {
    const n = this.uint16();
    if (n * minItemBytes > this.remaining) throw new ProtocolMalformedError(`${this.what}: count ${n} exceeds the message`);
    return n;
  }

  end(): void {
    if (this.offset !== this.body.length) throw new ProtocolMalformedError(`${this.what}: ${this.remaining} trailing bytes`);
  }
}

const target = (r: BodyReader): DescribeTarget => {
  const t = r.byte();
  if (t === 0x53) return 'S';
  if (t === 0x50) return 'P';
  throw new ProtocolMalformedError(`${r.what}: target must be 'S' or 'P'`);
};

/**
 * Decodes an untyped startup-phase packet (frame.code 0).
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-STARTUPMESSAGE
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SSLREQUEST
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-CANCELREQUEST
 */
export const decodeStartup = (frame: Frame): StartupPhaseMessage => {
  const r = new BodyReader(frame.body, 'startup packet');
  const code = r.uint32();
  switch (code) {
    case StartupCode.SSLRequest:
      r.end();
      return { type: 'SSLRequest' };
    case StartupCode.GSSENCRequest:
      r.end();
      return { type: 'GSSENCRequest' };
    case StartupCode.CancelRequest: {
      const processId = r.int32();
      const secretKey = r.int32();
      r.end();
      return { type: 'CancelRequest', processId, secretKey };
    }
    default: {
      if (code >>> 16 !== 3) throw new ProtocolMalformedError(`unsupported protocol version ${code >>> 16}.${code & 0xffff}`);
      const parameters = new Map<string, Buffer>();
      while (true) {
        const name = r.cstring();
        if (name === '') break;
        parameters.set(name, r.cstringBytes());
      }
      r.end();
      return { type: 'StartupMessage', protocolVersion: code, parameters };
    }
  }
};

/**
 * Decodes a typed message a client sends after startup.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
export const decodeFrontend = (frame: Frame): FrontendMessage => {
  switch (frame.code) {
    case FrontendCode.Query: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-QUERY
      const r = new BodyReader(frame.body, 'Query');
      const text = r.cstring();
      r.end();
      return { type: 'Query', text };
    }
    case FrontendCode.Parse: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PARSE
      const r = new BodyReader(frame.body, 'Parse');
      const name = r.cstring();
      const text = r.cstring();
      const n = r.count(4);
      const paramTypes: number[] = [];
      for (let i = 0; i < n; i++) paramTypes.push(r.uint32());
      r.end();
      return { type: 'Parse', name, text, paramTypes };
    }
    case FrontendCode.Bind:
      return decodeBind(frame.body);
    case FrontendCode.Describe: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-DESCRIBE
      const r = new BodyReader(frame.body, 'Describe');
      const t = target(r);
      const name = r.cstring();
      r.end();
      return { type: 'Describe', target: t, name };
    }
    case FrontendCode.Execute: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-EXECUTE
      const r = new BodyReader(frame.body, 'Execute');
      const portal = r.cstring();
      const maxRows = r.int32();
      r.end();
      return { type: 'Execute', portal, maxRows };
    }
    case FrontendCode.Close: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-CLOSE
      const r = new BodyReader(frame.body, 'Close');
      const t = target(r);
      const name = r.cstring();
      r.end();
      return { type: 'Close', target: t, name };
    }
    case FrontendCode.Sync:
      return empty(frame, { type: 'Sync' }, 'Sync');
    case FrontendCode.Flush:
      return empty(frame, { type: 'Flush' }, 'Flush');
    case FrontendCode.Terminate:
      return empty(frame, { type: 'Terminate' }, 'Terminate');
    case FrontendCode.CopyData:
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COPYDATA
      return { type: 'CopyData', data: frame.body };
    case FrontendCode.CopyDone:
      return empty(frame, { type: 'CopyDone' }, 'CopyDone');
    case FrontendCode.CopyFail: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COPYFAIL
      const r = new BodyReader(frame.body, 'CopyFail');
      const message = r.cstring();
      r.end();
      return { type: 'CopyFail', message };
    }
    case FrontendCode.Password:
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PASSWORDMESSAGE
      return { type: 'PasswordMessage', data: frame.body };
    case FrontendCode.FunctionCall: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-FUNCTIONCALL
      const r = new BodyReader(frame.body, 'FunctionCall');
      return { type: 'FunctionCall', functionOid: r.uint32() };
    }
    default:
      throw new ProtocolMalformedError(`unknown frontend message code 0x${frame.code.toString(16)}`);
  }
};

const empty = <M>(frame: Frame, message: M, what: string): M => {
  if (frame.body.length !== 0) throw new ProtocolMalformedError(`${what}: unexpected payload`);
  return message;
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-BIND */
const decodeBind = (body: Buffer): FrontendMessage => {
  const r = new BodyReader(body, 'Bind');
  const portal = r.cstring();
  const statement = r.cstring();
  const nFormats = r.count(2);
  const paramFormats: number[] = [];
  for (let i = 0; i < nFormats; i++) paramFormats.push(r.int16());
  const nParams = r.count(4);
  const params: (Buffer | null)[] = [];
  for (let i = 0; i < nParams; i++) {
    const length = r.int32();
    params.push(length === -1 ? null : r.bytes(length));
  }
  const nResult = r.count(2);
  const resultFormats: number[] = [];
  for (let i = 0; i < nResult; i++) resultFormats.push(r.int16());
  r.end();
  return { type: 'Bind', portal, statement, paramFormats, params, resultFormats };
};

/** The cleartext password of a PasswordMessage (null-terminated). */
export const decodePassword = (data: Buffer): string => {
  const r = new BodyReader(data, 'PasswordMessage');
  const password = r.cstring();
  r.end();
  return password;
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SASLINITIALRESPONSE */
export const decodeSASLInitialResponse = (data: Buffer): { mechanism: string; response: Buffer | null } => {
  const r = new BodyReader(data, 'SASLInitialResponse');
  const mechanism = r.cstring();
  const length = r.int32();
  const response = length === -1 ? null : r.bytes(length);
  r.end();
  return { mechanism, response };
};

/**
 * Decodes a message the server sends.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
export const decodeBackend = (frame: Frame): BackendMessage => {
  const body = frame.body;
  switch (frame.code) {
    case BackendCode.Authentication:
      return decodeAuthentication(body);
    case BackendCode.ParameterStatus: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PARAMETERSTATUS
      const r = new BodyReader(body, 'ParameterStatus');
      const name = r.cstring();
      const value = r.cstring();
      r.end();
      return { type: 'ParameterStatus', name, value };
    }
    case BackendCode.BackendKeyData: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-BACKENDKEYDATA
      const r = new BodyReader(body, 'BackendKeyData');
      const processId = r.int32();
      const secretKey = r.int32();
      r.end();
      return { type: 'BackendKeyData', processId, secretKey };
    }
    case BackendCode.ReadyForQuery: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-READYFORQUERY
      const r = new BodyReader(body, 'ReadyForQuery');
      const status = r.byte();
      r.end();
      return { type: 'ReadyForQuery', status };
    }
    case BackendCode.RowDescription:
      return { type: 'RowDescription', fields: decodeRowDescription(body) };
    case BackendCode.DataRow:
      return { type: 'DataRow', values: decodeDataRow(body) };
    case BackendCode.CommandComplete: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COMMANDCOMPLETE
      const r = new BodyReader(body, 'CommandComplete');
      const tag = r.cstring();
      r.end();
      return { type: 'CommandComplete', tag };
    }
    case BackendCode.ErrorResponse:
      return { type: 'ErrorResponse', fields: decodeNoticeFields(body, 'ErrorResponse') };
    case BackendCode.NoticeResponse:
      return { type: 'NoticeResponse', fields: decodeNoticeFields(body, 'NoticeResponse') };
    case BackendCode.CopyInResponse:
      return { type: 'CopyInResponse', ...decodeCopyResponse(body, 'CopyInResponse') };
    case BackendCode.CopyOutResponse:
      return { type: 'CopyOutResponse', ...decodeCopyResponse(body, 'CopyOutResponse') };
    case BackendCode.CopyBothResponse:
      return { type: 'CopyBothResponse', ...decodeCopyResponse(body, 'CopyBothResponse') };
    case BackendCode.CopyData:
      return { type: 'CopyData', data: body };
    case BackendCode.CopyDone:
      return empty(frame, { type: 'CopyDone' }, 'CopyDone');
    case BackendCode.EmptyQueryResponse:
      return empty(frame, { type: 'EmptyQueryResponse' }, 'EmptyQueryResponse');
    case BackendCode.ParseComplete:
      return empty(frame, { type: 'ParseComplete' }, 'ParseComplete');
    case BackendCode.BindComplete:
      return empty(frame, { type: 'BindComplete' }, 'BindComplete');
    case BackendCode.CloseComplete:
      return empty(frame, { type: 'CloseComplete' }, 'CloseComplete');
    case BackendCode.NoData:
      return empty(frame, { type: 'NoData' }, 'NoData');
    case BackendCode.PortalSuspended:
      return empty(frame, { type: 'PortalSuspended' }, 'PortalSuspended');
    case BackendCode.ParameterDescription: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PARAMETERDESCRIPTION
      const r = new BodyReader(body, 'ParameterDescription');
      const n = r.count(4);
      const types: number[] = [];
      for (let i = 0; i < n; i++) types.push(r.uint32());
      r.end();
      return { type: 'ParameterDescription', types };
    }
    case BackendCode.NotificationResponse: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NOTIFICATIONRESPONSE
      const r = new BodyReader(body, 'NotificationResponse');
      const processId = r.int32();
      const channel = r.cstring();
      const payload = r.cstring();
      r.end();
      return { type: 'NotificationResponse', processId, channel, payload };
    }
    case BackendCode.NegotiateProtocolVersion: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NEGOTIATEPROTOCOLVERSION
      const r = new BodyReader(body, 'NegotiateProtocolVersion');
      const minorVersion = r.int32();
      const n = r.int32();
      if (n < 0 || n > r.remaining) throw new ProtocolMalformedError('NegotiateProtocolVersion: bad option count');
      const unrecognized: string[] = [];
      for (let i = 0; i < n; i++) unrecognized.push(r.cstring());
      r.end();
      return { type: 'NegotiateProtocolVersion', minorVersion, unrecognized };
    }
    case BackendCode.FunctionCallResponse: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-FUNCTIONCALLRESPONSE
      const r = new BodyReader(body, 'FunctionCallResponse');
      const length = r.int32();
      const value = length === -1 ? null : r.bytes(length);
      r.end();
      return { type: 'FunctionCallResponse', value };
    }
    default:
      throw new ProtocolMalformedError(`unknown backend message code 0x${frame.code.toString(16)}`);
  }
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONOK */
export const decodeAuthentication = (body: Buffer): AuthenticationMessage => {
  const r = new BodyReader(body, 'Authentication');
  const code = r.int32();
  switch (code) {
    case AuthCode.Ok:
      r.end();
      return { type: 'AuthenticationOk' };
    case AuthCode.CleartextPassword:
      r.end();
      return { type: 'AuthenticationCleartextPassword' };
    case AuthCode.MD5Password: {
      const salt = r.bytes(4);
      r.end();
      return { type: 'AuthenticationMD5Password', salt };
    }
    case AuthCode.SASL: {
      // @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONSASL
      const mechanisms: string[] = [];
      while (true) {
        const name = r.cstring();
        if (name === '') break;
        mechanisms.push(name);
      }
      r.end();
      return { type: 'AuthenticationSASL', mechanisms };
    }
    case AuthCode.SASLContinue:
      return { type: 'AuthenticationSASLContinue', data: r.rest() };
    case AuthCode.SASLFinal:
      return { type: 'AuthenticationSASLFinal', data: r.rest() };
    case AuthCode.KerberosV5:
    case AuthCode.GSS:
    case AuthCode.GSSContinue:
    case AuthCode.SSPI:
      return { type: 'AuthenticationOther', code };
    default:
      throw new ProtocolMalformedError(`unknown authentication request ${code}`);
  }
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-ROWDESCRIPTION */
export const decodeRowDescription = (body: Buffer): FieldDescription[] => {
  const r = new BodyReader(body, 'RowDescription');
  const n = r.count(19);
  const fields: FieldDescription[] = [];
  for (let i = 0; i < n; i++) {
    const name = r.cstring();
    const tableOid = r.uint32();
    const attnum = r.int16();
    const typeOid = r.uint32();
    const typeSize = r.int16();
    const typeModifier = r.int32();
    const format = r.int16();
    fields.push({ name, tableOid, attnum, typeOid, typeSize, typeModifier, format });
  }
  r.end();
  return fields;
};

/**
 * The table OID of each field of a RowDescription, checked as decodeRowDescription checks the
 * whole: what the proxy asks of every masked result before its rows, without decoding names.
 */
export const rowDescriptionTableOids = (body: Buffer): number[] => {
  const r = new BodyReader(body, 'RowDescription');
  const n = r.count(19);
  const oids: number[] = [];
  for (let i = 0; i < n; i++) {
    r.skipCstring();
    oids.push(r.uint32());
    r.skip(14);
  }
  r.end();
  return oids;
};

/**
 * The column values of a DataRow as views into the body; null is SQL NULL. This is the hot path
 * of every result, so it reads the buffer directly rather than through BodyReader.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-DATAROW
 */
export const decodeDataRow = (body: Buffer): (Buffer | null)[] => {
  if (body.length < 2) throw new ProtocolMalformedError('DataRow: truncated');
  const n = body.readInt16BE(0);
  if (n < 0 || n * 4 > body.length - 2) throw new ProtocolMalformedError('DataRow: column count exceeds the message');
  const values: (Buffer | null)[] = new Array<Buffer | null>(n);
  let offset = 2;
  for (let i = 0; i < n; i++) {
    if (offset + 4 > body.length) throw new ProtocolMalformedError('DataRow: truncated');
    const length = body.readInt32BE(offset);
    offset += 4;
    if (length === -1) {
      values[i] = null;
      continue;
    }
    if (length < 0 || offset + length > body.length) throw new ProtocolMalformedError('DataRow: value overruns the message');
    values[i] = body.subarray(offset, offset + length);
    offset += length;
  }
  if (offset !== body.length) throw new ProtocolMalformedError('DataRow: trailing bytes');
  return values;
};

/** @see https://www.postgresql.org/docs/current/protocol-error-fields.html */
export const decodeNoticeFields = (body: Buffer, what = 'ErrorResponse'): NoticeFields => {
  const r = new BodyReader(body, what);
  const fields: Record<string, string> = {};
  while (true) {
    const type = r.byte();
    if (type === 0) break;
    fields[String.fromCharCode(type)] = r.cstring();
  }
  r.end();
  return fields;
};

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COPYOUTRESPONSE */
const decodeCopyResponse = (body: Buffer, what: string): { format: number; columnFormats: number[] } => {
  const r = new BodyReader(body, what);
  const format = r.byte();
  const n = r.count(2);
  const columnFormats: number[] = [];
  for (let i = 0; i < n; i++) columnFormats.push(r.int16());
  r.end();
  return { format, columnFormats };
};
