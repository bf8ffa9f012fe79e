/**
 * Bytes that are not RESP (or exceed the codec's bounds) raise the one ProtocolMalformedError of
 * the codecs (code `ERR_PROTOCOL_MALFORMED` of @sluice/contracts), so a caller catches a single
 * class whatever the protocol. It lives in codec-pg because codecs import only codecs.
 */
export { ProtocolMalformedError } from '@sluice/codec-pg';
