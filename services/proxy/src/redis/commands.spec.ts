import { describe, expect, it } from 'vitest';
import { describeCommand, needsQuotes } from './commands.js';

describe('needsQuotes', () => {
  it('agrees with /[\\s"]/ (and quotes the empty argument) for every UTF-16 code unit, alone and inside ASCII text', () => {
    const disagreements: string[] = [];
    for (let code = 0; code <= 0xffff; code++) {
      const char = String.fromCharCode(code);
      for (const part of [char, `key:${char}`, `${char}:value`]) if (needsQuotes(part) !== /[\s"]/.test(part)) disagreements.push(JSON.stringify(part));
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
});
