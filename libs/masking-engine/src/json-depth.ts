import { ResultWithheldError } from '@sluice/contracts';

/**
 * The deepest JSON document masking walks. The walks recurse, so a target's value nested some
 * thousands of levels (PostgreSQL keeps jsonb that deep; a Redis string or an HTTP body can be
 * anything) overflowed the stack mid-result: the PostgreSQL session ended as a proxy error with
 * the command it was answering never completed in the record. Real documents are a few dozen
 * levels deep; a deeper one is withheld like any result that cannot be masked.
 */
export const MAX_JSON_DEPTH = 256;

/** Whether `value` holds arrays or objects more than `levels` deep; iterative, so any depth is safe to ask. */
export const jsonDeeperThan = (value: unknown, levels: number): boolean => {
  const pending: { readonly node: unknown; readonly depth: number }[] = [{ node: value, depth: 0 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { node, depth } = next;
    if (node === null || typeof node !== 'object') continue;
    if (depth >= levels) return true;
    const children = Array.isArray(node) ? (node as unknown[]) : Object.values(node as Record<string, unknown>);
    for (const child of children) if (child !== null && typeof child === 'object') pending.push({ node: child, depth: depth + 1 });
  }
  return false;
};

const tooDeep = (): ResultWithheldError => new ResultWithheldError(`a JSON value nested deeper than ${MAX_JSON_DEPTH} levels cannot be masked`);

/**
 * For a recursive walk, at an array or object with `depth` arrays and objects above it: throws
 * ResultWithheldError past MAX_JSON_DEPTH. Walks check as they go, so a document is not traversed
 * a second time just to learn its depth.
 */
export const assertJsonDepthWithin = (depth: number): void => {
  if (depth >= MAX_JSON_DEPTH) throw tooDeep();
};

/**
 * Throws ResultWithheldError for a value too deep to walk (MAX_JSON_DEPTH) when it sits `depth`
 * levels down its document: for a value handled whole (JSON.stringify also recurses), not walked.
 */
export const assertJsonWalkable = (value: unknown, depth = 0): void => {
  if (value !== null && typeof value === 'object' && jsonDeeperThan(value, MAX_JSON_DEPTH - depth)) throw tooDeep();
};
