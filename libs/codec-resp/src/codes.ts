/**
 * RESP type prefixes (the first byte of every value).
 * @see https://redis.io/docs/latest/develop/reference/protocol-spec/#resp-protocol-description
 */
export const RespType = {
  SimpleString: 0x2b, // +
  SimpleError: 0x2d, // -
  Integer: 0x3a, // :
  BulkString: 0x24, // $
  Array: 0x2a, // *
  Null: 0x5f, // _
  Boolean: 0x23, // #
  Double: 0x2c, // ,
  BigNumber: 0x28, // (
  BulkError: 0x21, // !
  VerbatimString: 0x3d, // =
  Map: 0x25, // %
  Attribute: 0x7c, // |
  Set: 0x7e, // ~
  Push: 0x3e, // >
} as const;
export type RespType = (typeof RespType)[keyof typeof RespType];

export const CR = 0x0d; // \r
export const LF = 0x0a; // \n
export const STREAMED = 0x3f; // ? — RESP3 streamed length; Redis never sends it, Sluice refuses it

/** Bounds that keep a hostile peer from making the codec allocate or recurse without limit. */
export interface RespLimits {
  /** Longest bulk/verbatim/blob-error payload; Redis' own proto-max-bulk-len default is 512 MiB. */
  readonly maxBulkLength: number;
  /** Most elements of one aggregate. */
  readonly maxAggregateLength: number;
  /** Deepest nesting of aggregates. */
  readonly maxDepth: number;
  /** Longest simple line (simple string, error, number, length header). */
  readonly maxLineLength: number;
  /** Longest inline command; Redis' PROTO_INLINE_MAX_SIZE is 64 KiB. */
  readonly maxInlineLength: number;
}

export const DEFAULT_LIMITS: RespLimits = {
  maxBulkLength: 512 * 1024 * 1024,
  maxAggregateLength: 2 ** 31 - 1,
  maxDepth: 128,
  maxLineLength: 1024 * 1024,
  maxInlineLength: 64 * 1024,
};

/** Redis refuses a multibulk command with more arguments than this (server.c, PROTO_MBULK_BIG_ARG aside). */
export const COMMAND_LIMITS: RespLimits = {
  ...DEFAULT_LIMITS,
  maxAggregateLength: 1024 * 1024,
  maxDepth: 1,
};
