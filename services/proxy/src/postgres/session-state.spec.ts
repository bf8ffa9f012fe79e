import { describe, expect, it } from 'vitest';
import { schemasOf, unreadableParameter } from './session-state.js';

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
