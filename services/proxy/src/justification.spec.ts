import { describe, expect, it } from 'vitest';
import { MAX_JUSTIFICATION_CHARS } from '@sluice/contracts';
import { compileMasking, DEFAULT_MASKING_CONFIG } from '@sluice/masking-engine';
import { httpJustification, PendingJustification, redisJustification, shownJustification, sqlJustification } from './justification.js';

describe('sqlJustification', () => {
  it('reads a leading /* justification: … */ comment', () => {
    expect(sqlJustification('/* justification: ticket 42, old test rows */ DELETE FROM orders')).toBe(' ticket 42, old test rows ');
    expect(sqlJustification('\n  /*Justification:why*/DELETE FROM orders')).toBe('why');
  });

  it('finds it after other leading comments, and nested comments stay whole', () => {
    expect(sqlJustification('-- from the nightly job\n/* app=etl */ /* justification: see /* note */ below */ DELETE FROM t')).toBe(' see /* note */ below ');
  });

  it('never reads the statement itself: a comment after the first token, in a string or unclosed, is no justification', () => {
    expect(sqlJustification('DELETE FROM t /* justification: late */')).toBeUndefined();
    expect(sqlJustification("SELECT '/* justification: in a string */'")).toBeUndefined();
    expect(sqlJustification('/* justification: never closed DELETE FROM t')).toBeUndefined();
    expect(sqlJustification('/* justification: /* nested, outer never closed */ DELETE FROM t')).toBeUndefined();
    expect(sqlJustification('-- justification: line comments are not read\nDELETE FROM t')).toBeUndefined();
    expect(sqlJustification('/* reason: other label */ DELETE FROM t')).toBeUndefined();
    expect(sqlJustification('')).toBeUndefined();
  });
});

describe('httpJustification', () => {
  it('reads the Sluice-Justification header, percent-decoded as UTF-8', () => {
    expect(httpJustification({ 'sluice-justification': 'refund%20for%20order%2042%20%E2%80%93%20Ren%C3%A9' })).toBe('refund for order 42 – René');
    expect(httpJustification({ 'sluice-justification': 'plain words' })).toBe('plain words');
  });

  it('keeps text that is not valid percent-encoding as it is, and gives nothing without the header', () => {
    expect(httpJustification({ 'sluice-justification': '100% needed' })).toBe('100% needed');
    expect(httpJustification({ 'sluice-justification': ['one', 'two'] })).toBe('one two');
    expect(httpJustification({ authorization: 'Bearer x' })).toBeUndefined();
  });
});

describe('redisJustification', () => {
  const args = (...parts: string[]) => parts.map((part) => Buffer.from(part));

  it('reads ECHO "justification: …" in any letter case', () => {
    expect(redisJustification(args('ECHO', 'justification: clearing stale sessions'))).toBe(' clearing stale sessions');
    expect(redisJustification(args('echo', 'JUSTIFICATION:x'))).toBe('x');
  });

  it('ignores every other command and any other ECHO', () => {
    expect(redisJustification(args('ECHO', 'hello'))).toBeUndefined();
    expect(redisJustification(args('SET', 'justification: x', 'y'))).toBeUndefined();
    expect(redisJustification(args('CLIENT', 'SETNAME', 'justification:x'))).toBeUndefined();
    expect(redisJustification(args('ECHO'))).toBeUndefined();
  });

  it('reads only the start of a huge ECHO', () => {
    const text = redisJustification([Buffer.from('ECHO'), Buffer.alloc(10_000_000, 'a').fill('justification:', 0)]);
    // Four times what is shown is masked (a cut value stays out of view), at most 4 UTF-8 bytes each.
    expect(text!.length).toBeLessThanOrEqual(MAX_JUSTIFICATION_CHARS * 16 + 64);
  });
});

describe('shownJustification', () => {
  it('bounds, then masks with the given masker', () => {
    expect(shownJustification(' ssn 123-45-6789\nplease ', (text) => text.replace(/\d{3}-\d{2}-\d{4}/g, '***'))).toBe('ssn *** please');
    expect(shownJustification('x'.repeat(5_000), (text) => text)).toHaveLength(MAX_JUSTIFICATION_CHARS);
  });

  it('masks before it cuts: a card number or e-mail that straddles the bound is not shown in part', () => {
    const detectors = compileMasking(DEFAULT_MASKING_CONFIG, {}).everything;
    const mask = (text: string) => detectors.maskText(text, {});
    const lead = 'refund '.repeat(70).slice(0, MAX_JUSTIFICATION_CHARS - 10);
    for (const value of ['4111 1111 1111 1111', 'alice.smith@example.com']) {
      const shown = shownJustification(`${lead}${value} thanks`, mask)!;
      expect(Array.from(shown).length).toBeLessThanOrEqual(MAX_JUSTIFICATION_CHARS);
      expect(shown).not.toContain(value.slice(0, 8));
    }
  });

  it('leaves the justification out when masking fails (fail closed), and when there is none', () => {
    expect(
      shownJustification('ssn 123-45-6789', () => {
        throw new Error('masking down');
      }),
    ).toBeUndefined();
    expect(shownJustification(undefined, (text) => text)).toBeUndefined();
  });
});

describe('PendingJustification', () => {
  const echo = (text: string) => [Buffer.from('ECHO'), Buffer.from(text)];

  it('gives the last justification of the session to the next held command only', () => {
    const session = {};
    const pending = new PendingJustification();
    pending.note(session, echo('justification: first'));
    pending.note(session, [Buffer.from('GET'), Buffer.from('k')]);
    pending.note(session, echo('justification: second'));
    expect(pending.take(session)).toBe(' second');
    expect(pending.take(session)).toBeUndefined();
  });

  it('does not carry a justification into another session (AUTH as someone else)', () => {
    const before = {};
    const pending = new PendingJustification();
    pending.note(before, echo('justification: from the old identity'));
    expect(pending.take({})).toBeUndefined();
    expect(pending.take(before)).toBeUndefined();
  });
});
