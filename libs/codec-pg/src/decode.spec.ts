import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { binaryToText, decodeBinaryNumeric } from './binary.js';
import { decodeBackend, decodeFrontend, decodePassword, decodeRowDescription, decodeStartup, rowDescriptionTableOids } from './decode.js';
import {
  encodeBackendKeyData,
  encodeDataRow,
  encodeErrorResponse,
  encodeParameterStatus,
  encodeQuery,
  encodeReadyForQuery,
  encodeStartupMessage,
  encodeCancelRequest,
  encodeAuthenticationCleartextPassword,
  encodeAuthenticationOk,
  encodeSASLInitialResponse,
  encodeRowDescription,
  encodeNoticeFields,
  encodeNegotiateProtocolVersion,
} from './encode.js';
import { splitFrames } from './frames.js';
import type { BackendMessage, FrontendMessage, StartupPhaseMessage } from './messages.js';
import { decodeSASLInitialResponse } from './decode.js';

const fixture = (name: string): { client: Buffer; server: Buffer } => {
  const json = JSON.parse(readFileSync(new URL(`../../../test/fixtures/pg/${name}.json`, import.meta.url), 'utf8')) as {
    client: string;
    server: string;
  };
  return { client: Buffer.from(json.client, 'hex'), server: Buffer.from(json.server, 'hex') };
};

const clientMessages = (bytes: Buffer): (StartupPhaseMessage | FrontendMessage)[] =>
  splitFrames(bytes, 'startup').frames.map((f) => (f.code === 0 ? decodeStartup(f) : decodeFrontend(f)));
const serverMessages = (bytes: Buffer): BackendMessage[] =>
  splitFrames(bytes[0] === 0x4e ? bytes.subarray(1) : bytes, 'typed').frames.map(decodeBackend);

describe('decoding what psql 15 sends and receives', () => {
  it('reads the SSLRequest, the startup parameters and the whole Query text', () => {
    const messages = clientMessages(fixture('psql15-simple-query').client);
    expect(messages.map((m) => m.type)).toEqual(['SSLRequest', 'StartupMessage', 'Query', 'Terminate']);
    const startup = messages[1] as Extract<StartupPhaseMessage, { type: 'StartupMessage' }>;
    expect(startup.protocolVersion).toBe(196608);
    expect(startup.parameters.get('user')?.toString()).toBe('postgres');
    expect(startup.parameters.get('database')?.toString()).toBe('postgres');
    expect(messages[2]).toEqual({ type: 'Query', text: "select 1 as one, 'x' as two, null as three; select 2" });
  });

  it('reads the server side: auth ok, parameters, key, two result sets and ReadyForQuery', () => {
    const messages = serverMessages(fixture('psql15-simple-query').server);
    const types = messages.map((m) => m.type);
    expect(types[0]).toBe('AuthenticationOk');
    expect(types).toContain('ParameterStatus');
    expect(types).toContain('BackendKeyData');
    expect(types.filter((t) => t === 'RowDescription')).toHaveLength(2);
    const rows = messages.filter((m): m is Extract<BackendMessage, { type: 'DataRow' }> => m.type === 'DataRow');
    expect(rows[0]!.values.map((v) => v?.toString())).toEqual(['1', 'x', undefined]);
    const description = messages.find((m) => m.type === 'RowDescription') as Extract<BackendMessage, { type: 'RowDescription' }>;
    expect(description.fields.map((f) => [f.name, f.typeOid, f.format])).toEqual([
      ['one', 23, 0],
      ['two', 25, 0],
      ['three', 25, 0],
    ]);
    expect(messages.filter((m) => m.type === 'CommandComplete').map((m) => (m as { tag: string }).tag)).toEqual(['SELECT 1', 'SELECT 1']);
    expect(messages.at(-1)).toEqual({ type: 'ReadyForQuery', status: 0x49 });
  });

  it('reads COPY TO STDOUT rows as CopyData lines between CopyOutResponse and CopyDone', () => {
    const messages = serverMessages(fixture('psql15-copy-out').server);
    const start = messages.findIndex((m) => m.type === 'CopyOutResponse');
    expect(messages[start]).toMatchObject({ format: 0, columnFormats: [0, 0] });
    const data = messages.filter((m) => m.type === 'CopyData').map((m) => (m as { data: Buffer }).data.toString());
    expect(data).toEqual(['1\tuser1@example.com\n', '2\tuser2@example.com\n', '3\tuser3@example.com\n']);
    expect(messages.map((m) => m.type)).toContain('CopyDone');
  });

  it('reads COPY FROM STDIN data and CopyDone from the client', () => {
    const types = clientMessages(fixture('psql15-copy-in').client).map((m) => m.type);
    expect(types).toContain('CopyData');
    expect(types).toContain('CopyDone');
    expect(serverMessages(fixture('psql15-copy-in').server).map((m) => m.type)).toContain('CopyInResponse');
  });

  it('reads the ErrorResponse fields of a failed query', () => {
    const error = serverMessages(fixture('psql15-error').server).find((m) => m.type === 'ErrorResponse') as Extract<
      BackendMessage,
      { type: 'ErrorResponse' }
    >;
    expect(error.fields.C).toBe('42703');
    expect(error.fields.V).toBe('ERROR');
  });

  it('reads the password psql and node-postgres send after AuthenticationCleartextPassword', () => {
    const frames = splitFrames(fixture('password-messages').client, 'typed').frames;
    expect(frames).toHaveLength(2);
    for (const frame of frames) {
      const message = decodeFrontend(frame);
      expect(message.type).toBe('PasswordMessage');
      expect(decodePassword((message as { data: Buffer }).data)).toBe('eyJhbGciOiJSUzI1NiJ9.e30.sig');
    }
  });
});

describe('decoding what node-postgres 8 sends and receives', () => {
  it('reads Parse, Bind with parameters, Describe, Execute and Sync', () => {
    const messages = clientMessages(fixture('node-postgres8-extended').client);
    const parse = messages.find((m) => m.type === 'Parse') as Extract<FrontendMessage, { type: 'Parse' }>;
    expect(parse).toMatchObject({ name: '', text: 'select $1::int + 1 as n, $2::text as t' });
    const bind = messages.find((m) => m.type === 'Bind') as Extract<FrontendMessage, { type: 'Bind' }>;
    expect(bind.params.map((p) => p?.toString())).toEqual(['41', 'hi']);
    expect(messages.filter((m) => m.type === 'Parse' && m.name === 'q1')).toHaveLength(1);
    expect(messages.filter((m) => m.type === 'Bind' && m.statement === 'q1')).toHaveLength(2);
    expect(messages.some((m) => m.type === 'Describe' && m.target === 'P')).toBe(true);
    expect(messages.some((m) => m.type === 'Execute')).toBe(true);
    expect(messages.filter((m) => m.type === 'Sync')).toHaveLength(4);
    const binary = messages.filter((m): m is Extract<FrontendMessage, { type: 'Bind' }> => m.type === 'Bind').at(-1)!;
    expect(binary.resultFormats).toEqual([1]);
  });

  it('reads binary-format results back to their text values', () => {
    const messages = serverMessages(fixture('node-postgres8-extended').server);
    const descriptions = messages.filter((m): m is Extract<BackendMessage, { type: 'RowDescription' }> => m.type === 'RowDescription');
    const rows = messages.filter((m): m is Extract<BackendMessage, { type: 'DataRow' }> => m.type === 'DataRow');
    const fields = descriptions.at(-1)!.fields;
    expect(fields.every((f) => f.format === 1)).toBe(true);
    const values = rows.at(-1)!.values.map((v, i) => binaryToText(fields[i]!.typeOid, v!));
    expect(values).toEqual(['42', '1234567890123', '-12.345', 'txt', '{"a": 1}']);
  });
});

describe('binary numeric', () => {
  const numeric = (ndigits: number[], weight: number, sign: number, dscale: number): Buffer => {
    const b = Buffer.alloc(8 + ndigits.length * 2);
    b.writeInt16BE(ndigits.length, 0);
    b.writeInt16BE(weight, 2);
    b.writeUInt16BE(sign, 4);
    b.writeInt16BE(dscale, 6);
    ndigits.forEach((d, i) => b.writeInt16BE(d, 8 + i * 2));
    return b;
  };

  it('prints integers, fractions below one and zero as numeric_out does', () => {
    expect(decodeBinaryNumeric(numeric([1, 2345], 1, 0, 0))).toBe('12345');
    expect(decodeBinaryNumeric(numeric([50], -1, 0x4000, 3))).toBe('-0.005');
    expect(decodeBinaryNumeric(numeric([], 0, 0, 2))).toBe('0.00');
    expect(decodeBinaryNumeric(numeric([1], 2, 0, 0))).toBe('100000000');
    expect(decodeBinaryNumeric(numeric([], 0, 0xc000, 0))).toBe('NaN');
  });
});

describe('encoders', () => {
  const one = (bytes: Buffer): BackendMessage => {
    const { frames, leftover } = splitFrames(bytes, 'typed');
    expect(frames).toHaveLength(1);
    expect(leftover).toHaveLength(0);
    return decodeBackend(frames[0]!);
  };

  it('encode backend messages that decode back to the same values', () => {
    expect(one(encodeErrorResponse({ severity: 'ERROR', code: '42501', message: 'permission denied by rule "x"' }))).toEqual({
      type: 'ErrorResponse',
      fields: { S: 'ERROR', V: 'ERROR', C: '42501', M: 'permission denied by rule "x"' },
    });
    expect(one(encodeReadyForQuery(0x54))).toEqual({ type: 'ReadyForQuery', status: 0x54 });
    expect(one(encodeParameterStatus('server_version', '15.20'))).toEqual({ type: 'ParameterStatus', name: 'server_version', value: '15.20' });
    expect(one(encodeBackendKeyData(-5, 77))).toEqual({ type: 'BackendKeyData', processId: -5, secretKey: 77 });
    expect(one(encodeAuthenticationCleartextPassword())).toEqual({ type: 'AuthenticationCleartextPassword' });
    expect(one(encodeAuthenticationOk())).toEqual({ type: 'AuthenticationOk' });
    const row = one(encodeDataRow(['é', null, Buffer.from([1, 2]), ''])) as Extract<BackendMessage, { type: 'DataRow' }>;
    expect(row.values.map((v) => v?.toString('hex') ?? null)).toEqual(['c3a9', null, '0102', '']);
    expect(one(encodeRowDescription([{ name: 'a', typeOid: 25 }]))).toMatchObject({ fields: [{ name: 'a', typeOid: 25, format: 0 }] });
    const fields = { S: 'ERROR', C: '23505', M: 'duplicate key', D: 'Key (email)=(x) already exists.' };
    expect(one(encodeNoticeFields(0x45, fields))).toEqual({ type: 'ErrorResponse', fields });
    expect(one(encodeNoticeFields(0x4e, fields))).toEqual({ type: 'NoticeResponse', fields });
    expect(one(encodeNegotiateProtocolVersion(0, ['_pq_.x']))).toEqual({ type: 'NegotiateProtocolVersion', minorVersion: 0, unrecognized: ['_pq_.x'] });
  });

  it('encode frontend messages that decode back to the same values', () => {
    const startup = splitFrames(encodeStartupMessage([['user', 'u'], ['database', 'd']]), 'startup').frames[0]!;
    expect(decodeStartup(startup)).toEqual({ type: 'StartupMessage', protocolVersion: 196608, parameters: new Map([['user', Buffer.from('u')], ['database', Buffer.from('d')]]) });
    // Values are the client's bytes, whatever their encoding.
    const latin1 = splitFrames(encodeStartupMessage([['application_name', Buffer.from([0x63, 0x61, 0x66, 0xe9])]]), 'startup').frames[0]!;
    expect((decodeStartup(latin1) as { parameters: ReadonlyMap<string, Buffer> }).parameters.get('application_name')).toEqual(Buffer.from([0x63, 0x61, 0x66, 0xe9]));
    const cancel = splitFrames(encodeCancelRequest(12, -34), 'startup').frames[0]!;
    expect(decodeStartup(cancel)).toEqual({ type: 'CancelRequest', processId: 12, secretKey: -34 });
    const query = splitFrames(encodeQuery('select 1'), 'typed').frames[0]!;
    expect(decodeFrontend(query)).toEqual({ type: 'Query', text: 'select 1' });
    const sasl = decodeFrontend(splitFrames(encodeSASLInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=,r=abc')), 'typed').frames[0]!);
    expect(decodeSASLInitialResponse((sasl as { data: Buffer }).data)).toEqual({ mechanism: 'SCRAM-SHA-256', response: Buffer.from('n,,n=,r=abc') });
  });
});

describe('rowDescriptionTableOids', () => {
  it('gives the table OIDs decodeRowDescription gives, and refuses what it refuses', () => {
    const { frames } = splitFrames(
      encodeRowDescription([{ name: 'é', tableOid: 16384, attnum: 2, typeOid: 25 }, { name: '', typeOid: 23 }, { name: 'ssn', tableOid: 2147483647, attnum: 1, typeOid: 25 }]),
      'typed',
    );
    const body = frames[0]!.body;
    expect(rowDescriptionTableOids(body)).toEqual(decodeRowDescription(body).map((field) => field.tableOid));
    expect(rowDescriptionTableOids(body)).toEqual([16384, 0, 2147483647]);
    for (const broken of [body.subarray(0, body.length - 1), Buffer.concat([body, Buffer.from([0])]), Buffer.from([0, 1, 0x61])]) {
      expect(() => decodeRowDescription(broken)).toThrow();
      expect(() => rowDescriptionTableOids(broken)).toThrow();
    }
  });
});

describe('parameter counts above 32767', () => {
  /** A typed message of `code` around `body`. */
  const frame = (code: string, body: Buffer) => {
    const head = Buffer.alloc(5);
    head.write(code, 0, 'latin1');
    head.writeInt32BE(body.length + 4, 1);
    return splitFrames(Buffer.concat([head, body]), 'typed').frames[0]!;
  };
  const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
  const n = 50_000;

  it('reads a Parse and a Bind of 50000 parameters, as the server reads their unsigned counts', () => {
    const parse = decodeFrontend(frame('P', Buffer.concat([Buffer.from('\0insert\0'), u16(n), Buffer.alloc(n * 4, 0)])));
    expect(parse.type === 'Parse' && parse.paramTypes.length).toBe(n);
    const value = Buffer.from([0, 0, 0, 1, 0x37]);
    const bind = decodeFrontend(frame('B', Buffer.concat([Buffer.from('\0\0'), u16(0), u16(n), ...Array<Buffer>(n).fill(value), u16(0)])));
    expect(bind.type === 'Bind' && bind.params.length).toBe(n);
  });

  it('reads the ParameterDescription of 50000 parameters the server sends back', () => {
    const description = decodeBackend(frame('t', Buffer.concat([u16(n), Buffer.alloc(n * 4, 0)])));
    expect(description.type === 'ParameterDescription' && description.types.length).toBe(n);
  });

  it('still refuses a count larger than the bytes that follow', () => {
    expect(() => decodeFrontend(frame('P', Buffer.concat([Buffer.from('\0x\0'), u16(0xffff), Buffer.alloc(8)])))).toThrow(/exceeds the message/);
  });
});
