/**
 * Raised for any byte sequence that is not a well-formed PostgreSQL message. The code matches
 * `ERR_PROTOCOL_MALFORMED` of @sluice/contracts; the class lives here because codecs depend on
 * nothing but node:buffer.
 */
export class ProtocolMalformedError extends Error {
  readonly code = 'ERR_PROTOCOL_MALFORMED' as const;
  readonly expose = false;
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolMalformedError';
  }
}
