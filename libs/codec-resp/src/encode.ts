import { Buffer } from 'node:buffer';
import type { RespValue } from './messages.js';

const CRLF = '\r\n';

/** Simple strings and errors cannot carry CR or LF: replace them so a message never splits a frame. */
const oneLine = (text: string): string => text.replace(/[\r\n]+/g, ' ');

/** `-<message>\r\n`, e.g. `encodeError('NOPERM denied by rule x')`. @see https://redis.io/docs/latest/develop/reference/protocol-spec/#simple-errors */
export const encodeError = (message: string): Buffer => Buffer.from(`-${oneLine(message)}${CRLF}`, 'utf8');

/** `+<text>\r\n`. */
export const encodeSimple = (text: string): Buffer => Buffer.from(`+${oneLine(text)}${CRLF}`, 'utf8');

export const encodeInteger = (value: number | bigint): Buffer => Buffer.from(`:${value}${CRLF}`, 'latin1');

/** `$<len>\r\n<bytes>\r\n`. */
export const encodeBulk = (value: string | Buffer): Buffer => {
  const body = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return Buffer.concat([Buffer.from(`$${body.length}${CRLF}`, 'latin1'), body, Buffer.from(CRLF, 'latin1')]);
};

/** The null of the protocol version in use: `_` in RESP3, `$-1` in RESP2. */
export const encodeNull = (protocol: 2 | 3): Buffer => Buffer.from(protocol === 3 ? `_${CRLF}` : `$-1${CRLF}`, 'latin1');

/** A command as clients send it: an array of bulk strings. */
export const encodeCommand = (args: readonly (string | Buffer)[]): Buffer => {
  const parts: Buffer[] = [Buffer.from(`*${args.length}${CRLF}`, 'latin1')];
  for (const arg of args) parts.push(encodeBulk(arg));
  return Buffer.concat(parts);
};

/** Re-encodes a decoded (possibly masked) value in its own wire type. */
export const encodeValue = (value: RespValue): Buffer => {
  const parts: Buffer[] = [];
  writeValue(value, parts);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
};

const header = (prefix: string, n: number | string): Buffer => Buffer.from(`${prefix}${n}${CRLF}`, 'latin1');
const crlf = Buffer.from(CRLF, 'latin1');

const writeValue = (value: RespValue, parts: Buffer[]): void => {
  switch (value.type) {
    case 'simple':
      parts.push(encodeSimple(value.value));
      return;
    case 'error':
      parts.push(encodeError(value.value));
      return;
    case 'blobError':
      parts.push(header('!', value.value.length), value.value, crlf);
      return;
    case 'integer':
      parts.push(header(':', value.value.toString()));
      return;
    case 'bulk':
      parts.push(header('$', value.value.length), value.value, crlf);
      return;
    case 'verbatim':
      parts.push(header('=', value.value.length + 4), Buffer.from(`${value.format.slice(0, 3).padEnd(3, ' ')}:`, 'latin1'), value.value, crlf);
      return;
    case 'null':
      parts.push(Buffer.from(value.form === '_' ? `_${CRLF}` : `${value.form}-1${CRLF}`, 'latin1'));
      return;
    case 'double':
      parts.push(header(',', value.raw));
      return;
    case 'boolean':
      parts.push(Buffer.from(value.value ? `#t${CRLF}` : `#f${CRLF}`, 'latin1'));
      return;
    case 'bigNumber':
      parts.push(header('(', value.value.toString()));
      return;
    case 'array':
    case 'set':
    case 'push':
      parts.push(header(value.type === 'array' ? '*' : value.type === 'set' ? '~' : '>', value.items.length));
      for (const item of value.items) writeValue(item, parts);
      return;
    case 'map':
      parts.push(header('%', value.entries.length));
      for (const [k, v] of value.entries) {
        writeValue(k, parts);
        writeValue(v, parts);
      }
      return;
    case 'attribute':
      parts.push(header('|', value.attributes.length));
      for (const [k, v] of value.attributes) {
        writeValue(k, parts);
        writeValue(v, parts);
      }
      writeValue(value.value, parts);
      return;
    default: {
      const unreachable: never = value;
      throw new Error(`unknown RESP value ${String(unreachable)}`);
    }
  }
};
