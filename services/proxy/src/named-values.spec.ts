import { compileMasking } from '@sluice/masking-engine';
import { describe, expect, it } from 'vitest';
import { maskNamedValues } from './named-values.js';

const masking = compileMasking(
  { defaultRegion: 'US', detectors: [], profiles: { pii: { detectors: ['email'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] }, bare: { detectors: ['email'], strategy: 'partial', columns: [] } } },
  { hashKey: 'named-values' },
);
const pii = masking.profile('pii')!;
const mask = (text: string) => maskNamedValues(text, pii, {});

describe('values a text names, masked by the column rule of the name', () => {
  it.each([
    ['<u><name>Ann</name><ssn>AB-12</ssn><p:SSN a="1">AB-12</p:SSN></u>', '<u><name>Ann</name><ssn>[REDACTED]</ssn><p:SSN a="1">[REDACTED]</p:SSN></u>'],
    ['<user ssn="AB-12" name="Ann"/>', '<user ssn="[REDACTED]" name="Ann"/>'],
    ['name=Ann&ssn=AB-12&x=1', 'name=Ann&ssn=[REDACTED]&x=1'],
    ['took 3ms ssn=AB%2D12 name=Ann', 'took 3ms ssn=[REDACTED] name=Ann'],
    ['row "ssn": "AB-\\"12", "name": "Ann"', 'row "ssn": "[REDACTED]", "name": "Ann"'],
    ['row "ssn": 123456789, "n": 1', 'row "ssn": "[REDACTED]", "n": 1'],
    ['- name: Ann\n  ssn: AB-12\n  note: x', '- name: Ann\n  ssn: [REDACTED]\n  note: x'],
  ])('%s', (text, expected) => {
    expect(mask(text)).toBe(expected);
  });

  it('leaves text alone when nothing it names is covered, or the profile has no column rules', () => {
    const text = '<name>Ann</name> name=Ann "name": "Ann" name: Ann ssn=';
    expect(mask(text)).toBe(text);
    expect(maskNamedValues('ssn=AB-12', masking.profile('bare')!, {})).toBe('ssn=AB-12');
  });
});

describe('named values on hostile input', () => {
  it('stays linear on long runs of blanks, brackets and names', () => {
    const started = performance.now();
    for (const text of [`a: x${' '.repeat(200_000)}y`, '<a>'.repeat(50_000), 'ssn'.repeat(60_000), `"ssn": "${'\\\\'.repeat(100_000)}`, `x=${' '.repeat(200_000)}`]) mask(text);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe('JSON members in text that is not one document', () => {
  it.each([
    ['a name written with escapes', 'cut {"\\u0073sn": "AB-12", "name": "Ann"', 'cut {"\\u0073sn": "[REDACTED]", "name": "Ann"'],
    ['an object value', 'cut {"ssn": {"area": "AB", "serial": "12"}, "name": "Ann"', 'cut {"ssn": "[REDACTED]", "name": "Ann"'],
    ['an array value, brackets in its strings', 'cut {"ssn": ["A}B", "1]2"], "name": "Ann"', 'cut {"ssn": "[REDACTED]", "name": "Ann"'],
    ['an object value never closed: the rest of the text', 'cut {"ssn": {"area": "AB", "serial": "12", "name": "Ann"', 'cut {"ssn": "[REDACTED]"'],
    ['a covered member inside an uncovered object', 'cut {"person": {"ssn": "AB-12"}, "n": 1', 'cut {"person": {"ssn": "[REDACTED]"}, "n": 1'],
  ])('masks %s', (_label, text, expected) => {
    expect(mask(text)).toBe(expected);
  });

  it('stays linear on long names, escapes and brackets', () => {
    const started = performance.now();
    for (const text of [`"${'a'.repeat(200_000)}": 1`, `"ssn": ${'['.repeat(100_000)}`, `${'"\\u0073sn": {'.repeat(20_000)}`, `"${'\\\\'.repeat(100_000)}": 1`]) mask(text);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
