/** What the Redis adapter needs to know about a command beyond the policy's decision. */

import { isUtf8 } from 'node:buffer';
import { sortOptions, sortPatternKey } from '@sluice/contracts';
import type { FieldHint } from './reply-masking.js';

/** Commands a client may send before it authenticates (everything else gets NOAUTH). */
export const PRE_AUTH_COMMANDS = new Set(['AUTH', 'HELLO', 'PING', 'QUIT']);

/** Commands that put a connection in subscriber mode; their confirmations are not plain replies. */
export const SUBSCRIBE_COMMANDS = new Set(['SUBSCRIBE', 'PSUBSCRIBE', 'SSUBSCRIBE', 'UNSUBSCRIBE', 'PUNSUBSCRIBE', 'SUNSUBSCRIBE']);
export const UNSUBSCRIBE_COMMANDS = new Set(['UNSUBSCRIBE', 'PUNSUBSCRIBE', 'SUNSUBSCRIBE']);

/** What Redis accepts from a RESP2 client in subscriber mode. */
export const SUBSCRIBER_CONTEXT = new Set([...SUBSCRIBE_COMMANDS, 'PING', 'QUIT', 'RESET']);

/** Commands that change how replies come back: inside MULTI they would do so only at EXEC. */
export const NOT_IN_TRANSACTION = new Set([...SUBSCRIBE_COMMANDS, 'HELLO', 'MONITOR']);

/** Longest argument and command text kept in audit records; the approval hash uses the full args. */
const MAX_ARG_CHARS = 1024;
const MAX_TEXT_CHARS = 8192;

/**
 * `SET key "a value"`: name and arguments, quoted where they hold spaces, bounded for the audit
 * record; whether it was cut, and the command's full size (arguments and the spaces between them),
 * so a 50 MB SET is recorded as its beginning, marked truncated.
 */
export const describeCommand = (args: readonly Buffer[]): { readonly text: string; readonly truncated: boolean; readonly bytes: number } => {
  let text = '';
  let truncated = false;
  let bytes = Math.max(0, args.length - 1);
  for (const arg of args) bytes += arg.length;
  for (let index = 0; index < args.length; index++) {
    const arg = args[index]!;
    let end = Math.min(arg.length, MAX_ARG_CHARS * 4);
    // Cut on a character's first byte, so a long UTF-8 argument does not end in a broken one.
    while (end > 0 && end < arg.length && (arg[end]! & 0xc0) === 0x80) end--;
    const kept = end < arg.length ? arg.subarray(0, end) : arg;
    let part = kept.toString('utf8');
    // Bytes that are not UTF-8 all read as U+FFFD: such an argument is written byte for byte.
    const binary = part.includes('\uFFFD') && !isUtf8(kept);
    if (binary) part = escapedBytes(kept, MAX_ARG_CHARS);
    if (part.length > MAX_ARG_CHARS) {
      part = `${part.slice(0, MAX_ARG_CHARS)}…`;
      truncated = true;
    }
    if (binary) part = `"${part}"`;
    else {
      if (index === 0) part = part.toUpperCase();
      if (needsQuotes(part)) part = JSON.stringify(part);
    }
    text += (index === 0 ? '' : ' ') + part;
    if (text.length > MAX_TEXT_CHARS) return { text: `${text.slice(0, MAX_TEXT_CHARS)}…`, truncated: true, bytes };
  }
  return { text, truncated, bytes };
};

/**
 * An argument that is not UTF-8 as the record's text, inside quotes: its well-formed characters as
 * JSON.stringify writes them, each other byte as `\xHH`. No JSON text holds `\x` (a backslash is
 * written `\\`), so two arguments that differ in a byte are never recorded alike, as they would be
 * were every such byte (or a NUL, which the store keeps as U+FFFD) read as U+FFFD. At most about
 * `maxChars` of it.
 */
const escapedBytes = (bytes: Buffer, maxChars: number): string => {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let text = '';
  let run = 0;
  let index = 0;
  const flush = (end: number): void => {
    if (end > run) text += JSON.stringify(decoder.decode(bytes.subarray(run, end))).slice(1, -1);
  };
  while (index < bytes.length && text.length <= maxChars) {
    const length = utf8SequenceLength(bytes, index);
    if (length > 0) {
      index += length;
      continue;
    }
    flush(index);
    text += `\\x${bytes[index]!.toString(16).padStart(2, '0')}`;
    index += 1;
    run = index;
  }
  flush(index);
  return text;
};

const isContinuation = (byte: number | undefined): boolean => byte !== undefined && (byte & 0xc0) === 0x80;

/** Length of the well-formed UTF-8 sequence at `at` (no overlong forms, no surrogates, nothing past U+10FFFF), else 0. */
const utf8SequenceLength = (bytes: Buffer, at: number): number => {
  const lead = bytes[at]!;
  if (lead < 0x80) return 1;
  const second = bytes[at + 1];
  if (lead >= 0xc2 && lead <= 0xdf) return isContinuation(second) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    if (!isContinuation(second) || !isContinuation(bytes[at + 2])) return 0;
    if ((lead === 0xe0 && second! < 0xa0) || (lead === 0xed && second! > 0x9f)) return 0;
    return 3;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    if (!isContinuation(second) || !isContinuation(bytes[at + 2]) || !isContinuation(bytes[at + 3])) return 0;
    if ((lead === 0xf0 && second! < 0x90) || (lead === 0xf4 && second! > 0x8f)) return 0;
    return 4;
  }
  return 0;
};

/**
 * Is an argument quoted in the record (empty, or holding whitespace, a quote or a control
 * character)? Exactly `/[\s"\u0000-\u001f]/`: ASCII text, nearly every key and value, is told by its
 * char codes, anything else by the regular expression itself (Unicode spaces such as U+00A0 and
 * U+2028 count too). Quoted, a control character is written as an escape (JSON.stringify's): a NUL
 * the store would keep as U+FFFD stays told apart from a U+FFFD the agent sent.
 */
export const needsQuotes = (part: string): boolean => {
  if (part === '') return true;
  for (let index = 0; index < part.length; index++) {
    const code = part.charCodeAt(index);
    // Control characters are exactly what this looks for.
    // eslint-disable-next-line no-control-regex
    if (code >= 0x80) return /[\s"\u0000-\u001f]/.test(part);
    if (code === 0x22 || code <= 0x20) return true;
  }
  return false;
};

export interface HelloArgs {
  readonly protocol: 2 | 3 | undefined;
  readonly auth: { readonly username: string; readonly password: string } | undefined;
  readonly setName: string | undefined;
}

/**
 * Parses `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
 * @see https://redis.io/docs/latest/commands/hello/
 * Returns an error message for the client when the arguments are wrong.
 */
export const parseHello = (args: readonly Buffer[]): HelloArgs | { readonly error: string } => {
  if (args.length === 1) return { protocol: undefined, auth: undefined, setName: undefined };
  const version = args[1]!.toString();
  if (version !== '2' && version !== '3') {
    return /^\d+$/.test(version)
      ? { error: 'NOPROTO unsupported protocol version' }
      : { error: 'ERR Protocol version is not an integer or out of range' };
  }
  let auth: HelloArgs['auth'];
  let setName: string | undefined;
  for (let i = 2; i < args.length; i++) {
    const option = args[i]!.toString().toUpperCase();
    if (option === 'AUTH' && i + 2 < args.length) {
      auth = { username: args[i + 1]!.toString(), password: args[i + 2]!.toString() };
      i += 2;
    } else if (option === 'SETNAME' && i + 1 < args.length) {
      setName = args[i + 1]!.toString();
      i += 1;
    } else {
      return { error: `ERR Syntax error in HELLO option '${args[i]!.toString()}'` };
    }
  }
  return { protocol: version === '3' ? 3 : 2, auth, setName };
};

/** The token of `AUTH <token>` or `AUTH <user> <token>`, or undefined for a wrong arity. */
export const authToken = (args: readonly Buffer[]): string | undefined =>
  args.length === 2 ? args[1]!.toString() : args.length === 3 ? args[2]!.toString() : undefined;

const upper = (arg: Buffer | undefined): string => (arg ? arg.toString('latin1').toUpperCase() : '');

/**
 * How the reply of a command maps to hash fields, so column rules apply to every reply that can
 * carry a field's value: named fields (HGET, HMGET, SORT … GET k->f), field/value pairs (HGETALL,
 * HSCAN, HRANDFIELD … WITHVALUES, stream entries) and values of unnamed fields (HVALS, scripts,
 * XINFO: the strictest rule).
 */
export const fieldHint = (name: string, args: readonly Buffer[], protocol: 2 | 3): FieldHint | undefined => {
  switch (name) {
    case 'HGET':
      return args[2] ? { kind: 'fields', names: [args[2].toString()] } : undefined;
    case 'HMGET':
      return { kind: 'fields', names: args.slice(2).map(String) };
    case 'HGETALL':
      // RESP3 answers a map, which carries its keys itself.
      return protocol === 2 ? { kind: 'pairs' } : undefined;
    case 'HVALS':
    case 'HGETDEL':
    case 'HGETEX':
      return { kind: 'unknownFields' };
    case 'HSCAN':
      return { kind: 'scan', inner: args.some((arg, index) => index > 2 && upper(arg) === 'NOVALUES') ? undefined : { kind: 'pairs' } };
    case 'HRANDFIELD':
      if (!args.some((arg, index) => index > 2 && upper(arg) === 'WITHVALUES')) return undefined;
      return protocol === 2 ? { kind: 'pairs' } : { kind: 'pairList' };
    case 'XRANGE':
    case 'XREVRANGE':
      return { kind: 'entries' };
    case 'XCLAIM':
      return args.some((arg, index) => index > 5 && upper(arg) === 'JUSTID') ? undefined : { kind: 'entries' };
    case 'XAUTOCLAIM':
      return { kind: 'scan', inner: { kind: 'entries' } };
    case 'XREAD':
    case 'XREADGROUP':
      return { kind: 'streams' };
    case 'XINFO':
    case 'EVAL':
    case 'EVALSHA':
    case 'EVAL_RO':
    case 'EVALSHA_RO':
    case 'FCALL':
    case 'FCALL_RO':
      return { kind: 'everyValue' };
    case 'SORT':
    case 'SORT_RO': {
      const { gets } = sortOptions(args);
      if (gets.length === 0) return undefined;
      // `GET #` is the element itself and `GET k:*` a string key: no field, detectors apply.
      return { kind: 'cycle', names: gets.map((pattern) => sortPatternKey(pattern)?.field) };
    }
    default:
      return undefined;
  }
};

/** The field whose value a scalar reply is (HGET), for column rules. */
export const scalarField = (name: string, args: readonly Buffer[]): string | undefined => (name === 'HGET' ? args[2]?.toString() : undefined);

/**
 * Why Sluice refuses a command whatever the policy says, or undefined. These would change the
 * reply stream so that replies and commands could no longer be paired (CLIENT REPLY OFF/SKIP,
 * a replication stream), or change the upstream connection's identity, which Sluice owns.
 */
export const refusalOf = (name: string, args: readonly Buffer[]): string | undefined => {
  switch (name) {
    case 'RESET':
      return 'RESET is not allowed through Sluice';
    case 'SYNC':
    case 'PSYNC':
    case 'REPLCONF':
      return `${name} would turn the connection into a replication stream`;
    case 'CLIENT':
      if (upper(args[1]) === 'REPLY' && upper(args[2]) !== 'ON') return 'CLIENT REPLY OFF|SKIP would put replies out of step with commands';
      return undefined;
    default:
      return undefined;
  }
};

/**
 * Commands whose reply carries a value (or part of one) in a form masking cannot cover: a
 * serialized value, a substring or common subsequence, single bits. Under a masking profile
 * they are refused; a fragment of an SSN is no longer recognisable as one.
 */
export const UNMASKABLE_REPLIES: ReadonlyMap<string, string> = new Map([
  ['DUMP', 'returns the serialized value'],
  ['GETRANGE', 'returns part of a value'],
  ['SUBSTR', 'returns part of a value'],
  ['LCS', 'returns parts of two values'],
  ['GETBIT', 'returns bits of a value'],
  ['BITFIELD', 'returns bits of a value'],
  ['BITFIELD_RO', 'returns bits of a value'],
  ['BITPOS', 'returns bits of a value'],
  ['BITCOUNT', 'returns bits of a value'],
  ['DEBUG', 'returns internals of a value'],
]);
