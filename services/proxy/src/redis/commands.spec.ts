import { describe, expect, it } from 'vitest';
import { describeCommand, needsQuotes } from './commands.js';

describe('needsQuotes', () => {
  it('agrees with /[\\s"\\u0000-\\u001f]/ (and quotes the empty argument) for every UTF-16 code unit, alone and inside ASCII text', () => {
    const disagreements: string[] = [];
    // eslint-disable-next-line no-control-regex
    const quoted = /[\s"\u0000-\u001f]/;
    for (let code = 0; code <= 0xffff; code++) {
      const char = String.fromCharCode(code);
      for (const part of [char, `key:${char}`, `${char}:value`]) if (needsQuotes(part) !== quoted.test(part)) disagreements.push(JSON.stringify(part));
    }
    expect(disagreements).toEqual([]);
    expect(needsQuotes('')).toBe(true);
  });
});

describe('describeCommand', () => {
  it('quotes arguments holding whitespace or a quote, Unicode spaces included, and upper-cases the name', () => {
    const args = ['get', 'plain:key', 'a b', 'say "hi"', 'nbsp\u00a0here', 'line\u2028sep', 'café', ''].map((arg) => Buffer.from(arg));
    expect(describeCommand(args)).toEqual({
      text: 'GET plain:key "a b" "say \\"hi\\"" "nbsp\u00a0here" "line\u2028sep" café ""',
      truncated: false,
      bytes: args.reduce((sum, arg) => sum + arg.length, args.length - 1),
    });
  });

  it('records arguments that differ only in bytes that are not UTF-8, or in a control character, as different texts', () => {
    const key = (tail: number[] | string) => Buffer.concat([Buffer.from('k:'), typeof tail === 'string' ? Buffer.from(tail, 'utf8') : Buffer.from(tail)]);
    const keys = [key([0xff]), key([0xfe]), key('\uFFFD'), key([0x00]), key([0xc3]), key('\\xff'), key([0xed, 0xa0, 0x80]), key('é'), key([0xe9])];
    const texts = keys.map((name) => describeCommand([Buffer.from('GET'), name]).text);
    expect(new Set(texts).size).toBe(keys.length);
    expect(texts.slice(0, 6)).toEqual(['GET "k:\\xff"', 'GET "k:\\xfe"', 'GET k:\uFFFD', 'GET "k:\\u0000"', 'GET "k:\\xc3"', 'GET k:\\xff']);
    // A quote or backslash beside the bytes stays JSON-escaped inside the quotes.
    expect(describeCommand([Buffer.from('SET'), Buffer.from([0x22, 0x5c, 0xff]), Buffer.from('v')]).text).toBe('SET "\\"\\\\\\xff" v');
  });

  it('records a command name holding a control character, a space or nothing as quoted text, as it does an argument', () => {
    const names = ['GE\u0000T', 'GE\uFFFDT', 'get x', '', 'g\u00e9t'].map((name) => describeCommand([Buffer.from(name), Buffer.from('k')]).text);
    expect(names).toEqual(['"GE\\u0000T" k', 'GE\uFFFDT k', '"GET X" k', '"" k', 'G\u00c9T k']);
  });

  it('cuts a long UTF-8 argument on a character boundary, so it is not taken for bytes that are not UTF-8', () => {
    const long = Buffer.from(`x${'é'.repeat(3000)}`);
    const { text, truncated } = describeCommand([Buffer.from('SET'), Buffer.from('k'), long]);
    expect(truncated).toBe(true);
    expect(text).toBe(`SET k x${'é'.repeat(1023)}…`);
  });
});
