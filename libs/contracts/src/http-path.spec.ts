import { describe, expect, it } from 'vitest';
import { normalizeHttpPath, normalizeHttpPathInFull } from './http-path.js';

/** Pieces a path is built of: the ones the shortcut takes, and every one that must not take it. */
const PIECES = ['/', 'a', 'Z', '9', '.', '..', '-', '_', '~', '!', '$', '&', "'", '(', ')', '*', '+', ',', '=', ':', '@', ';', '%2e', '%2E', '%41', '%2F', '%25', '%00', '%3B', '%5c', '%zz', '%', '\\', '\0', ' ', 'é', '"', '<', '|', '?', '#', '?x=1', '#f'];

/** Every path of up to `length` pieces: each piece at every place, against its neighbours. */
function* pathsOf(length: number, prefix = ''): Generator<string> {
  yield prefix;
  if (length === 0) return;
  for (const piece of PIECES) yield* pathsOf(length - 1, prefix + piece);
}

/** Paths of 4 to 9 pieces, from a fixed seed (the same every run). */
function* randomPaths(count: number): Generator<string> {
  let seed = 12;
  const next = (below: number) => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return seed % below;
  };
  for (let made = 0; made < count; made++) {
    let path = '';
    for (let pieces = 4 + next(6); pieces > 0; pieces--) path += PIECES[next(PIECES.length)];
    yield path;
  }
}

describe('normalizeHttpPath', () => {
  it('gives what the full algorithm gives, for every path of up to three pieces and many longer ones', () => {
    let checked = 0;
    for (const path of [...pathsOf(3), ...randomPaths(100_000)]) {
      for (const candidate of [path, `/${path}`]) {
        if (normalizeHttpPath(candidate) !== normalizeHttpPathInFull(candidate)) {
          expect.fail(`${JSON.stringify(candidate)}: ${JSON.stringify(normalizeHttpPath(candidate))} but in full ${JSON.stringify(normalizeHttpPathInFull(candidate))}`);
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(350_000);
  });

  it('takes paths already in normal form as they are, and still normalises or refuses the rest', () => {
    expect(normalizeHttpPath('/')).toBe('/');
    expect(normalizeHttpPath('/api/v1/users/7')).toBe('/api/v1/users/7');
    expect(normalizeHttpPath('/api/file.json?x=1#top')).toBe('/api/file.json');
    expect(normalizeHttpPath('/api/.well-known/x/')).toBe('/api/.well-known/x/');
    expect(normalizeHttpPath('/a/.../b')).toBe('/a/.../b');
    expect(normalizeHttpPath('')).toBeUndefined();
    expect(normalizeHttpPath('api')).toBeUndefined();
    expect(normalizeHttpPath('//admin')).toBe('/admin');
    expect(normalizeHttpPath('/public/../admin')).toBe('/admin');
    expect(normalizeHttpPath('/public/./x/.')).toBe('/public/x');
    expect(normalizeHttpPath('/%61dmin')).toBe('/admin');
    expect(normalizeHttpPath('/..')).toBeUndefined();
    expect(normalizeHttpPath('/a;b')).toBeUndefined();
    expect(normalizeHttpPath('/a%2Fb')).toBeUndefined();
    expect(normalizeHttpPath('/a\\b')).toBeUndefined();
  });
});
