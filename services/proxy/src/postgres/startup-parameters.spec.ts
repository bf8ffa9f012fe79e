import { describe, expect, it } from 'vitest';
import { readStartupParameters, sessionSettings, settingRefusedByTarget, splitOptions, StartupParameterRefusal } from './startup-parameters.js';

const target = { resourceName: 'shop-db', database: 'shop' };
const read = (entries: [string, string | Buffer][]) =>
  readStartupParameters(new Map(entries.map(([name, value]) => [name, typeof value === 'string' ? Buffer.from(value) : value])), target);
/** Each setting's name and text (its bytes are looked at on their own). */
const texts = (request: ReturnType<typeof read>): [string, string][] => request.settings.map(([name, value]) => [name, value]);
/** The settings the target gets, values as text (UTF-8). */
const forwarded = (request: ReturnType<typeof read>): [string, string][] =>
  sessionSettings(request).map(([name, value]) => [name, typeof value === 'string' ? value : value.toString('utf8')]);
const refusal = (entries: [string, string][]): StartupParameterRefusal => {
  try {
    read(entries);
  } catch (error) {
    if (error instanceof StartupParameterRefusal) return error;
    throw error;
  }
  throw new Error('not refused');
};

describe('startup parameters', () => {
  it('passes the settings a driver sends, with names in lower case as PostgreSQL matches them', () => {
    const request = read([
      ['user', 'agent'],
      ['database', 'shop'],
      ['application_name', 'psql'],
      ['client_encoding', 'UTF8'],
      ['DateStyle', 'ISO, MDY'],
      ['TimeZone', 'UTC'],
      ['IntervalStyle', 'iso_8601'],
      ['extra_float_digits', '2'],
      ['statement_timeout', '5s'],
      ['lock_timeout', '1s'],
      ['idle_in_transaction_session_timeout', '10s'],
      ['search_path', 'app, public'],
      ['default_transaction_isolation', 'serializable'],
      ['options', '-c default_transaction_deferrable=on -c client_min_messages=warning -c bytea_output=escape -c idle_session_timeout=1h'],
    ]);
    expect(request.user).toBe('agent');
    expect(request.database).toBe('shop');
    expect(texts(request)).toEqual([
      ['default_transaction_deferrable', 'on'],
      ['client_min_messages', 'warning'],
      ['bytea_output', 'escape'],
      ['idle_session_timeout', '1h'],
      ['application_name', 'psql'],
      ['client_encoding', 'UTF8'],
      ['datestyle', 'ISO, MDY'],
      ['timezone', 'UTC'],
      ['intervalstyle', 'iso_8601'],
      ['extra_float_digits', '2'],
      ['statement_timeout', '5s'],
      ['lock_timeout', '1s'],
      ['idle_in_transaction_session_timeout', '10s'],
      ['search_path', 'app, public'],
      ['default_transaction_isolation', 'serializable'],
    ]);
  });

  it('reads -c, -cname=value and --name=value from options, before the plain parameters so those win', () => {
    const request = read([
      ['statement_timeout', '1s'],
      ['options', '-c statement_timeout=2s -csearch_path=a,\\ b --lock-timeout=3s  --application_name=x\\\\y'],
    ]);
    expect(texts(request)).toEqual([
      ['statement_timeout', '2s'],
      ['search_path', 'a, b'],
      ['lock_timeout', '3s'],
      ['application_name', 'x\\y'],
      ['statement_timeout', '1s'],
    ]);
  });

  it('splits options on white space with backslash escapes, as PostgreSQL does', () => {
    expect(splitOptions('  -c a=b\\ c\t--d=e\\\\ ')).toEqual(['-c', 'a=b c', '--d=e\\']);
    expect(splitOptions('')).toEqual([]);
  });

  it('refuses a setting that would undo policy, in any letter case, naming it', () => {
    for (const name of ['default_transaction_read_only', 'Default_Transaction_Read_Only', 'role', 'session_authorization', 'standard_conforming_strings', 'backslash_quote', 'replication', 'work_mem']) {
      const error = refusal([[name, 'off']]);
      expect(error.sqlstate).toBe('42501');
      expect(error.message).toContain(`"${name}"`);
    }
  });

  it('refuses the same settings smuggled through options, however spelled', () => {
    for (const options of ['-c default_transaction_read_only=off', '-cROLE=postgres', '--default-transaction-read-only=off', '-c application_name=x -c session_authorization=postgres']) {
      expect(refusal([['options', options]]).sqlstate).toBe('42501');
    }
  });

  it('refuses options that are not a setting: other server switches, a bare word, a -c without value', () => {
    expect(refusal([['options', '-B 100']]).sqlstate).toBe('42501');
    expect(refusal([['options', 'statement_timeout=1']]).sqlstate).toBe('42501');
    expect(refusal([['options', '-c']]).sqlstate).toBe('42601');
    expect(refusal([['options', '-c statement_timeout']]).sqlstate).toBe('42601');
  });

  it('refuses the startup keys spelled in another case: PostgreSQL reads them as unknown settings', () => {
    expect(refusal([['Options', '-c statement_timeout=1']]).sqlstate).toBe('42501');
    expect(refusal([['USER', 'x']]).sqlstate).toBe('42501');
  });

  it('accepts every client encoding PostgreSQL has that the proxy converts; refuses the others with 0A000 and an unknown name with 22023, naming them', () => {
    for (const name of ['UTF8', 'utf-8', 'Unicode', 'SQL_ASCII', 'LATIN1', 'iso_8859_15', 'SJIS', 'BIG5', 'GBK', 'GB18030', 'UHC', 'WIN1252', 'KOI8R', 'EUC_JP']) {
      expect(texts(read([['client_encoding', name]]))).toEqual([['client_encoding', name]]);
    }
    for (const name of ['JOHAB', 'EUC_TW', 'MULE_INTERNAL', 'SHIFT_JIS_2004', 'EUC_JIS_2004']) {
      const error = refusal([['client_encoding', name]]);
      expect(error.sqlstate).toBe('0A000');
      expect(error.message).toContain(`client_encoding "${name}"`);
    }
    expect(refusal([['client_encoding', 'klingon']])).toMatchObject({ sqlstate: '22023', message: 'invalid value for parameter "client_encoding": "klingon"' });
  });

  it('takes the target database, the resource name, the user name (a driver default) or none; refuses any other with 3D000', () => {
    expect(read([['database', 'shop']]).database).toBe('shop');
    expect(read([['database', 'shop-db']]).database).toBe('shop-db');
    expect(read([['user', 'agent'], ['database', 'agent']]).database).toBe('agent');
    expect(read([['user', 'agent']]).database).toBeUndefined();
    const error = refusal([['user', 'agent'], ['database', 'nosuchdb']]);
    expect(error.sqlstate).toBe('3D000');
    expect(error.message).toBe('database "nosuchdb" does not exist');
  });

  it('opens the target session in UTF8 (SQL_ASCII when the agent asked for it), whatever the agent converts from, and adds no application_name of its own', () => {
    expect(forwarded(read([['application_name', 'a']]))).toEqual([['client_encoding', 'UTF8'], ['application_name', 'a']]);
    expect(forwarded(read([['client_encoding', 'utf8']]))).toEqual([['client_encoding', 'UTF8']]);
    expect(forwarded(read([['client_encoding', 'LATIN1'], ['application_name', 'a']]))).toEqual([['client_encoding', 'UTF8'], ['application_name', 'a']]);
    expect(forwarded(read([['client_encoding', 'sql_ascii']]))).toEqual([['client_encoding', 'sql_ascii']]);
  });

  it("passes the agent's bytes to the target unconverted, as the server takes them, and reads their text in the agent's encoding", () => {
    const cafe = Buffer.from([0x63, 0x61, 0x66, 0xe9]);
    const request = read([['client_encoding', 'LATIN1'], ['application_name', cafe], ['options', Buffer.concat([Buffer.from('-c search_path='), cafe])]]);
    expect(sessionSettings(request)).toEqual([['client_encoding', 'UTF8'], ['search_path', cafe], ['application_name', cafe]]);
    expect(texts(request)).toEqual([['search_path', 'café'], ['client_encoding', 'LATIN1'], ['application_name', 'café']]);
    // UTF8 agents: the text is the UTF-8 reading of the same bytes.
    expect(texts(read([['application_name', 'café']]))).toEqual([['application_name', 'café']]);
    expect(sessionSettings(read([['application_name', 'café']]))).toEqual([['client_encoding', 'UTF8'], ['application_name', Buffer.from('café')]]);
  });

  it("relays the target's refusal of a value (class 22) as worded, and nothing else of the target's", () => {
    expect(settingRefusedByTarget({ sqlstate: '22023', serverMessage: 'invalid value for parameter "search_path": "a b"' })).toEqual({
      sqlstate: '22023',
      message: 'invalid value for parameter "search_path": "a b"',
    });
    expect(settingRefusedByTarget({ sqlstate: '28P01', serverMessage: 'password authentication failed for user "owner"' })).toBeUndefined();
    expect(settingRefusedByTarget({ sqlstate: '3D000', serverMessage: 'database "x" does not exist' })).toBeUndefined();
  });
});
