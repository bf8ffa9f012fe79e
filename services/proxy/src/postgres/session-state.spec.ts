import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { schemasOf, SessionEffectsCache, unreadableParameter } from './session-state.js';

describe('unreadableParameter', () => {
  it('ends the session when the server lexes strings with backslash escapes', () => {
    expect(unreadableParameter('standard_conforming_strings', 'off', 'UTF8')).toBeDefined();
    expect(unreadableParameter('standard_conforming_strings', 'on', 'UTF8')).toBeUndefined();
  });

  it('ends the session when the client encoding is not UTF8', () => {
    expect(unreadableParameter('client_encoding', 'SJIS', 'UTF8')).toBeDefined();
    expect(unreadableParameter('client_encoding', 'LATIN1', 'UTF8')).toBeDefined();
    // Unconverted: readable only when the database's own bytes are UTF-8.
    expect(unreadableParameter('client_encoding', 'SQL_ASCII', 'UTF8')).toBeUndefined();
    expect(unreadableParameter('client_encoding', 'SQL_ASCII', 'LATIN1')).toBeDefined();
    expect(unreadableParameter('client_encoding', 'SQL_ASCII', undefined)).toBeDefined();
    expect(unreadableParameter('client_encoding', 'UTF8', 'LATIN1')).toBeUndefined();
  });

  it('leaves other parameters alone', () => {
    expect(unreadableParameter('application_name', 'off', 'UTF8')).toBeUndefined();
  });
});

describe('schemasOf', () => {
  it('keeps the server order and skips NULL rows', () => {
    expect(schemasOf([['pg_catalog'], [null], ['public']])).toEqual(['pg_catalog', 'public']);
  });
});

describe('SessionEffectsCache', () => {
  beforeAll(async () => {
    await loadSqlClassifier();
  });

  it('answers texts that differ only in constants from one parse of their shape', () => {
    const cache = new SessionEffectsCache();
    const first = cache.of('SELECT abalance FROM pgbench_accounts WHERE aid = 1');
    expect(first.searchPath).toBe(false);
    expect(cache.of('SELECT abalance FROM pgbench_accounts WHERE aid = 2')).toBe(first);
  });

  it('never lets a literal that changes the path share an answer with one that does not', () => {
    const cache = new SessionEffectsCache();
    expect(cache.of("SELECT set_config('application_name', 'x', false)", ['public']).searchPath).toBe(true);
    expect(cache.of("SELECT set_config('search_path', 'evil', false)", ['public']).searchPath).toBe(true);
    expect(cache.of("SELECT current_setting('search_path')", ['public']).searchPath).toBe(true);
  });

  it('knows a built-in call without arguments keeps the path only when pg_catalog is searched first', () => {
    const cache = new SessionEffectsCache();
    expect(cache.of('SELECT count(*), now() FROM people', ['public']).searchPath).toBe(false);
    expect(cache.of('SELECT pg_catalog.count(*) FROM people', ['public', 'pg_catalog']).searchPath).toBe(false);
    // A function named now() in public is found before pg_catalog's.
    expect(cache.of('SELECT count(*), now() FROM people', ['public', 'pg_catalog']).searchPath).toBe(true);
    // Unknown path, an argument (another schema's overload may match better), or a user's function: re-read.
    expect(cache.of('SELECT count(*) FROM people').searchPath).toBe(true);
    expect(cache.of('SELECT lower(name) FROM people', ['public']).searchPath).toBe(true);
    expect(cache.of('SELECT my_function() FROM people', ['public']).searchPath).toBe(true);
    expect(cache.of('SELECT count(*) FROM people WHERE id = my_function()', ['public']).searchPath).toBe(true);
  });

  it('answers the same text asked again at once under another search path as that path decides', () => {
    const cache = new SessionEffectsCache();
    const text = 'SELECT count(*), now() FROM people';
    const path = ['public'];
    expect(cache.of(text, path).searchPath).toBe(false);
    expect(cache.of(text, path).searchPath).toBe(false);
    expect(cache.of(text, ['public', 'pg_catalog']).searchPath).toBe(true);
    expect(cache.of(text, path).searchPath).toBe(false);
    expect(cache.of(text).searchPath).toBe(true);
    expect(cache.of(text, ['pg_catalog', 'public']).searchPath).toBe(false);
  });

  it('keeps the last answer of each search path apart when texts and paths interleave', () => {
    const cache = new SessionEffectsCache();
    const keeps = 'SELECT count(*), now() FROM people';
    const sets = "SELECT set_config('search_path', 'evil', false)";
    const catalogFirst = ['public'];
    const publicFirst = ['public', 'pg_catalog'];
    for (let round = 0; round < 2; round++) {
      expect(cache.of(keeps, catalogFirst).searchPath).toBe(false);
      expect(cache.of(keeps).searchPath).toBe(true);
      expect(cache.of(keeps, publicFirst).searchPath).toBe(true);
      expect(cache.of(sets, catalogFirst).searchPath).toBe(true);
      expect(cache.of(keeps).searchPath).toBe(true);
      expect(cache.of(keeps, catalogFirst).searchPath).toBe(false);
      expect(cache.of(sets).searchPath).toBe(true);
      expect(cache.of(keeps, publicFirst).searchPath).toBe(true);
    }
  });
});
