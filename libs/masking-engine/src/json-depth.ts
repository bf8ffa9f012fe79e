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

/** Throws ResultWithheldError for a document too deep to walk (MAX_JSON_DEPTH). */
export const assertJsonWalkable = (document: unknown): void => {
  if (jsonDeeperThan(document, MAX_JSON_DEPTH)) throw new ResultWithheldError(`a JSON value nested deeper than ${MAX_JSON_DEPTH} levels cannot be masked`);
};
