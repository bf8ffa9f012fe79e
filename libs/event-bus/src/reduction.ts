import type { CloudEvent, EventReduction } from '@sluice/contracts';

/** A field of `data` kept as it is when its JSON is at most this long; longer strings are cut to it. */
const KEPT_FIELD_CHARS = 1024;

/** UTF-8 size of a JSON text (what goes on the wire), not its UTF-16 length. */
export const jsonBytes = (json: string): number => Buffer.byteLength(json, 'utf8');

/**
 * The reduced form of an event that cannot go on the bus as it is: the same envelope (id, subject,
 * type, time, sessionseq: the session's chain stays whole), `data` with its small fields, long strings
 * cut, large arrays and objects dropped, and `data.reduced` saying what was dropped and why.
 * The result is at most `limitBytes` long whatever the input (down to an envelope-only event).
 */
export const reduceEvent = (
  event: CloudEvent,
  reason: EventReduction['reason'],
  originalBytes: number,
  limitBytes: number,
  error?: string,
): { event: CloudEvent; json: string; reduction: EventReduction } => {
  const source = (typeof event.data === 'object' && event.data !== null ? event.data : {}) as Record<string, unknown>;
  const data: Record<string, unknown> = {};
  const dropped: string[] = [];
  for (const [key, value] of Object.entries(source)) {
    if (typeof value === 'string' && value.length > KEPT_FIELD_CHARS) {
      data[key] = value.slice(0, KEPT_FIELD_CHARS);
      dropped.push(key);
      continue;
    }
    let json: string | undefined;
    try {
      json = JSON.stringify(value);
    } catch {
      // Not JSON at all (a BigInt, a cycle): nothing of it can be kept.
      dropped.push(key);
      continue;
    }
    if (json !== undefined && json.length > KEPT_FIELD_CHARS) dropped.push(key);
    else data[key] = value;
  }
  if ('truncated' in source || dropped.length > 0) data.truncated = true;
  const reduction: EventReduction = { reason, originalBytes, dropped, ...(error === undefined ? {} : { error: error.slice(0, 200) }) };
  // A reduced event's data may lack fields its kind requires: readers know it by `data.reduced`.
  const envelope = { ...event, data: { ...data, reduced: reduction } } as unknown as CloudEvent;
  const json = JSON.stringify(envelope);
  if (jsonBytes(json) <= limitBytes) return { event: envelope, json, reduction };
  // Many small fields can still add up: then only the reduction itself is kept.
  const bare: EventReduction = { ...reduction, dropped: Object.keys(source) };
  const bareEvent = { ...event, data: { truncated: true, reduced: bare } } as unknown as CloudEvent;
  return { event: bareEvent, json: JSON.stringify(bareEvent), reduction: bare };
};
