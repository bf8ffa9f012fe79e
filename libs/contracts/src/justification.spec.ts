import { describe, expect, it } from 'vitest';
import { boundJustification, MAX_JUSTIFICATION_CHARS } from './justification.js';

describe('boundJustification', () => {
  it('keeps a plain sentence as it is', () => {
    expect(boundJustification('ticket 42: old test orders')).toBe('ticket 42: old test orders');
  });

  it('gives nothing for no text, blanks or controls only', () => {
    expect(boundJustification(undefined)).toBeUndefined();
    expect(boundJustification('  \t\n ')).toBeUndefined();
    expect(boundJustification('\u0000\u202e')).toBeUndefined();
  });

  it('makes one line: line breaks, controls and bidirectional overrides become single spaces', () => {
    expect(boundJustification('line one\r\nline two\u0007 and\u202eevil\u2066')).toBe('line one line two and evil');
  });

  it('cuts a long text to the limit in characters, not bytes, and says so', () => {
    const cut = boundJustification('é'.repeat(MAX_JUSTIFICATION_CHARS * 3))!;
    expect(Array.from(cut)).toHaveLength(MAX_JUSTIFICATION_CHARS);
    expect(cut.endsWith('…')).toBe(true);
    // An astral character is never split into a lone surrogate.
    const emoji = boundJustification('🙂'.repeat(MAX_JUSTIFICATION_CHARS + 1))!;
    expect(emoji).toBe(`${'🙂'.repeat(MAX_JUSTIFICATION_CHARS - 1)}…`);
  });
});
