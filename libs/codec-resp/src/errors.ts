/**
 * Raised for bytes that are not RESP (or exceed the codec's bounds). The code matches
 * `ERR_PROTOCOL_MALFORMED` of @sluice/contracts; the codec keeps its own class because codecs
 * depend on nothing but node:buffer.
 */
export class ProtocolMalformedError extends Error {
  readonly code = 'ERR_PROTOCOL_MALFORMED' as const;
  readonly expose = false;
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolMalformedError';
  }
}
