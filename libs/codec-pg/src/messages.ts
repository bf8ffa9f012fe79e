/**
 * Decoded PostgreSQL protocol messages, as unions on `type`. Byte payloads are views
 * (subarrays) into the frame they came from: copy them before keeping them past the frame.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

/** One length-delimited message. `code` is 0 for the untyped packets of the startup phase. */
export interface Frame {
  readonly code: number;
  /** The payload after the code and length. */
  readonly body: Buffer;
  /** The whole message: code (if any), length and payload. */
  readonly raw: Buffer;
}

export type StartupPhaseMessage =
  | { readonly type: 'SSLRequest' }
  | { readonly type: 'GSSENCRequest' }
  | { readonly type: 'CancelRequest'; readonly processId: number; readonly secretKey: number }
  | {
      readonly type: 'StartupMessage';
      readonly protocolVersion: number;
      /**
       * Parameter names and values in the order sent (user, database, options, GUCs). Values stay
       * bytes: the server takes them unconverted, in no particular encoding.
       */
      readonly parameters: ReadonlyMap<string, Buffer>;
    };

export type DescribeTarget = 'S' | 'P';

export type FrontendMessage =
  | { readonly type: 'Query'; readonly text: string }
  | { readonly type: 'Parse'; readonly name: string; readonly text: string; readonly paramTypes: readonly number[] }
  | {
      readonly type: 'Bind';
      readonly portal: string;
      readonly statement: string;
      readonly paramFormats: readonly number[];
      /** Parameter values; null is SQL NULL. */
      readonly params: readonly (Buffer | null)[];
      readonly resultFormats: readonly number[];
    }
  | { readonly type: 'Describe'; readonly target: DescribeTarget; readonly name: string }
  | { readonly type: 'Execute'; readonly portal: string; readonly maxRows: number }
  | { readonly type: 'Close'; readonly target: DescribeTarget; readonly name: string }
  | { readonly type: 'Sync' }
  | { readonly type: 'Flush' }
  | { readonly type: 'Terminate' }
  | { readonly type: 'CopyData'; readonly data: Buffer }
  | { readonly type: 'CopyDone' }
  | { readonly type: 'CopyFail'; readonly message: string }
  /** PasswordMessage / SASLInitialResponse / SASLResponse: read with decodePassword or decodeSASLInitialResponse. */
  | { readonly type: 'PasswordMessage'; readonly data: Buffer }
  | { readonly type: 'FunctionCall'; readonly functionOid: number };

export interface FieldDescription {
  readonly name: string;
  /** OID of the source table, 0 when the column is not a plain table column. */
  readonly tableOid: number;
  /** Attribute number in that table, 0 when none. */
  readonly attnum: number;
  readonly typeOid: number;
  readonly typeSize: number;
  readonly typeModifier: number;
  /** 0 text, 1 binary. */
  readonly format: number;
}

/** ErrorResponse / NoticeResponse fields keyed by their field type character ('S', 'C', 'M', …). */
export type NoticeFields = Readonly<Record<string, string>>;

export type AuthenticationMessage =
  | { readonly type: 'AuthenticationOk' }
  | { readonly type: 'AuthenticationCleartextPassword' }
  | { readonly type: 'AuthenticationMD5Password'; readonly salt: Buffer }
  | { readonly type: 'AuthenticationSASL'; readonly mechanisms: readonly string[] }
  | { readonly type: 'AuthenticationSASLContinue'; readonly data: Buffer }
  | { readonly type: 'AuthenticationSASLFinal'; readonly data: Buffer }
  /** Kerberos, GSS, SSPI: recognised, not supported by the proxy. */
  | { readonly type: 'AuthenticationOther'; readonly code: number };

export type BackendMessage =
  | AuthenticationMessage
  | { readonly type: 'ParameterStatus'; readonly name: string; readonly value: string }
  | { readonly type: 'BackendKeyData'; readonly processId: number; readonly secretKey: number }
  | { readonly type: 'ReadyForQuery'; readonly status: number }
  | { readonly type: 'RowDescription'; readonly fields: readonly FieldDescription[] }
  | { readonly type: 'DataRow'; readonly values: readonly (Buffer | null)[] }
  | { readonly type: 'CommandComplete'; readonly tag: string }
  | { readonly type: 'ErrorResponse'; readonly fields: NoticeFields }
  | { readonly type: 'NoticeResponse'; readonly fields: NoticeFields }
  | { readonly type: 'CopyInResponse' | 'CopyOutResponse' | 'CopyBothResponse'; readonly format: number; readonly columnFormats: readonly number[] }
  | { readonly type: 'CopyData'; readonly data: Buffer }
  | { readonly type: 'CopyDone' }
  | { readonly type: 'EmptyQueryResponse' }
  | { readonly type: 'ParseComplete' }
  | { readonly type: 'BindComplete' }
  | { readonly type: 'CloseComplete' }
  | { readonly type: 'NoData' }
  | { readonly type: 'PortalSuspended' }
  | { readonly type: 'ParameterDescription'; readonly types: readonly number[] }
  | { readonly type: 'NotificationResponse'; readonly processId: number; readonly channel: string; readonly payload: string }
  | { readonly type: 'NegotiateProtocolVersion'; readonly minorVersion: number; readonly unrecognized: readonly string[] }
  | { readonly type: 'FunctionCallResponse'; readonly value: Buffer | null };
