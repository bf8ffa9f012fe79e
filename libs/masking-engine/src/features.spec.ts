import { describe, expect, it } from 'vitest';
import { scanFeatures, type Features } from './features.js';

const none: Features = { digits: 0, strictRun: 0, looseRun: 0, upper: 0, dots: 0, colons: 0, at: false, secretish: false, assigns: false, ibanStart: false };
const featuresOf = (text: string): Features => ({ ...scanFeatures(text) });

describe('scanFeatures', () => {
  it.each([
    ['', {}],
    ['call 555-123-4567 now', { digits: 10, strictRun: 10, looseRun: 10, secretish: true }],
    ['x4111x1111', { digits: 8, strictRun: 4, looseRun: 4 }],
    ['GB82 west', { digits: 2, strictRun: 2, looseRun: 2, upper: 2, ibanStart: true }],
    ['Mail ada@example.com.', { upper: 1, dots: 2, at: true }],
    ['Zoë 4111 ü 1111', { digits: 8, strictRun: 4, looseRun: 4, upper: 1 }],
    ['ab(12)34 56', { digits: 6, strictRun: 4, looseRun: 6 }],
    ['token=AbC_dEf:xyz', { upper: 3, colons: 1, secretish: true, assigns: true }],
  ] as const)('reads %j', (text, expected) => {
    expect(featuresOf(text)).toEqual({ ...none, ...expected });
  });

  it('breaks digit runs and upper-case runs at letters however long the run of letters', () => {
    const letters = 'x'.repeat(1_000);
    expect(featuresOf(`${letters}4111${letters}1111${letters}`)).toEqual({ ...none, digits: 8, strictRun: 4, looseRun: 4 });
    expect(featuresOf(`GB${'ü'.repeat(500)}82`)).toEqual({ ...none, digits: 2, strictRun: 2, looseRun: 2, upper: 2 });
    expect(featuresOf(`${letters}GB82${letters}`)).toEqual({ ...none, digits: 2, strictRun: 2, looseRun: 2, upper: 2, ibanStart: true });
    expect(featuresOf(`${'é'.repeat(300)}a@b${'漢'.repeat(300)}`)).toEqual({ ...none, at: true });
  });
});
