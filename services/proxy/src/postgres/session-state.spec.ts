import { describe, expect, it } from 'vitest';
import { schemasOf, unreadableParameter } from './session-state.js';

describe('unreadableParameter', () => {
  it('ends the session when the server lexes strings with backslash escapes', () => {
    expect(unreadableParameter('standard_conforming_strings', 'off')).toBeDefined();
    expect(unreadableParameter('standard_conforming_strings', 'on')).toBeUndefined();
  });

  it('ends the session when the client encoding is not UTF8', () => {
    expect(unreadableParameter('client_encoding', 'SJIS')).toBeDefined();
    expect(unreadableParameter('client_encoding', 'UTF8')).toBeUndefined();
  });

  it('leaves other parameters alone', () => {
    expect(unreadableParameter('application_name', 'off')).toBeUndefined();
  });
});

describe('schemasOf', () => {
  it('keeps the server order and skips NULL rows', () => {
    expect(schemasOf([['pg_catalog'], [null], ['public']])).toEqual(['pg_catalog', 'public']);
  });
});
