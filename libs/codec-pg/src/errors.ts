/**
 * Raised for any byte sequence that is not a well-formed message of a codec: PostgreSQL here, RESP
 * too (codec-resp re-exports this class). The code matches `ERR_PROTOCOL_MALFORMED` of
 * @sluice/contracts; the class lives in a codec because codecs depend on nothing but node:buffer
 * and each other.
 */
export class ProtocolMalformedError extends Error {
  readonly code = 'ERR_PROTOCOL_MALFORMED' as const;
  readonly expose = false;
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolMalformedError';
  }
}

/**
 * A message whose length field is well-formed but beyond the reader's limit: refused before a byte
 * of it is buffered. Still malformed for callers that do not tell the two apart.
 */
export class MessageTooLongError extends ProtocolMalformedError {
  constructor(
    readonly length: number,
    readonly limit: number,
  ) {
    super(`message length ${length} exceeds the limit of ${limit}`);
    this.name = 'MessageTooLongError';
  }
}
