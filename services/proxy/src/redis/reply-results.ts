import { decodeReply, encodeValue, type RespValue } from '@sluice/codec-resp';
import type { MaskCounts, ProfileMasker } from '@sluice/masking-engine';
import type { AuditPort } from '../ports.js';
import { fieldHint, scalarField } from './commands.js';
import { flattenReply, maskReply, UNKNOWN_FIELD } from './reply-masking.js';
import type { QueuedCommand } from './reply-stream.js';

/** What a reply is masked for: the command it answers, as it was sent. */
export interface AnsweredCommand {
  readonly name: string;
  readonly args: readonly Buffer[];
  /** Sent inside MULTI: the reply is QUEUED (or an error), the result comes with EXEC. */
  readonly queued: boolean;
  /** The commands an EXEC runs, by position, with their mask profiles. */
  readonly txQueued: readonly QueuedCommand[] | undefined;
  readonly maskProfile: string | undefined;
}

export interface MaskedReply {
  /** The reply as the agent sees it. */
  readonly value: RespValue;
  readonly bytes: Buffer;
  readonly counts: MaskCounts;
}

/**
 * Masks one reply frame with the profile of the command it answers (each of an EXEC's replies
 * with its own command's). Throws when a masker is unavailable: the caller withholds the reply.
 */
export const maskCommandReply = (
  original: RespValue,
  frame: Buffer,
  command: AnsweredCommand,
  protocol: 2 | 3,
  maskerOf: (profile: string | undefined) => ProfileMasker | undefined,
): MaskedReply => {
  const counts: MaskCounts = {};
  let value = original;
  if (command.name === 'EXEC' && value.type === 'array' && command.txQueued) {
    const queued = command.txQueued;
    // A reply element with no queued command to pair it with is masked by EXEC's own profile, fields unknown.
    const items = value.items.map((item, index) => {
      const one = queued[index];
      const masker = maskerOf(one?.maskProfile ?? command.maskProfile);
      if (!masker) return item;
      if (!one) return maskReply(item, masker, counts, protocol, { kind: 'unknownFields' }, UNKNOWN_FIELD);
      return maskReply(item, masker, counts, protocol, fieldHint(one.name, one.args, protocol), scalarField(one.name, one.args));
    });
    const before = value.items;
    if (items.some((item, index) => item !== before[index])) value = { type: 'array', items };
  } else {
    const masker = maskerOf(command.maskProfile);
    if (masker) {
      const hint = command.queued ? undefined : fieldHint(command.name, command.args, protocol);
      value = maskReply(value, masker, counts, protocol, hint, command.queued ? undefined : scalarField(command.name, command.args));
    }
  }
  return { value, bytes: value === original && frame.length > 0 ? frame : encodeValue(value), counts };
};

/**
 * Masks a pushed frame (a pub/sub message, a MONITOR line) with the subscription's masker. MONITOR
 * lines carry other clients' arguments, any of which may be a covered field's value.
 */
export const maskPushed = (value: RespValue, frame: Buffer, masker: ProfileMasker | undefined, protocol: 2 | 3, monitor: boolean): MaskedReply => {
  const counts: MaskCounts = {};
  const masked = masker ? maskReply(value, masker, counts, protocol, monitor ? { kind: 'everyValue' } : undefined) : value;
  return { value: masked, bytes: masked === value ? frame : encodeValue(masked), counts };
};

/** Decodes a reply frame; see maskCommandReply. */
export const decodeAndMask = (
  frame: Buffer,
  command: AnsweredCommand,
  protocol: 2 | 3,
  maskerOf: (profile: string | undefined) => ProfileMasker | undefined,
  replace?: RespValue,
): MaskedReply => {
  const original = decodeReply(frame);
  // A reply Sluice replaces (EXECABORT for a transaction it discarded) is masked as such.
  return replace ? maskCommandReply(replace, Buffer.alloc(0), command, protocol, maskerOf) : maskCommandReply(original, frame, command, protocol, maskerOf);
};

/** The text of an error reply, or undefined for any other reply. */
export const errorTextOf = (value: RespValue): string | undefined =>
  value.type === 'error' ? value.value : value.type === 'blobError' ? value.value.toString('utf8') : undefined;

/** The error code word (`WRONGTYPE`, `ERR`, …) of a Redis error reply. */
export const errorCodeOf = (value: RespValue): string => /^[A-Z]+/.exec(errorTextOf(value) ?? '')?.[0] ?? 'ERR';

/** The result.returned record of a reply as sent (masked); `commandId` is `push` for pushed data. */
export const recordResult = (
  audit: AuditPort,
  recording: { readonly maxRows: number; readonly maxBytes: number },
  sessionId: string,
  commandId: string,
  reply: MaskedReply,
): void => {
  const flat = flattenReply(reply.value, recording);
  audit.record(sessionId, 'result.returned', {
    commandId,
    columns: flat.columns,
    rows: flat.rows,
    rowCount: flat.rowCount,
    bytes: reply.bytes.length,
    truncated: flat.truncated,
    maskedCounts: reply.counts,
  });
};
