import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';

/** The JetStream API error codes Sluice acts on (the server's `err_code`, stable across versions). */
export const JetStreamErrorCode = JetStreamApiCodes;

/**
 * Is this the JetStream API's answer with that error code? Matched on the code the server sends,
 * never on its message text (which servers reword).
 */
export const isJetStreamApiError = (error: unknown, code: number): error is JetStreamApiError => error instanceof JetStreamApiError && error.code === code;
