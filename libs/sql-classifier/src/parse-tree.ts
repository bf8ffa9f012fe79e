/** Accessors for libpg-query's JSON parse tree (protobuf JSON: wrapped nodes, omitted zero values). */

export type Node = Record<string, unknown>;

export const isObject = (value: unknown): value is Node => typeof value === 'object' && value !== null;
export const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
export const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
export const names = (value: unknown): string[] => list(value).map((item) => str((item as { String?: { sval?: unknown } }).String?.sval) ?? '');

/** `{ Tag: {...} }` -> [Tag, body]; undefined for an unwrapped struct. */
export const unwrap = (value: unknown): [string, Node] | undefined => {
  if (!isObject(value)) return undefined;
  let tag: string | undefined;
  for (const key in value) {
    if (tag !== undefined) return undefined;
    tag = key;
  }
  if (tag === undefined) return undefined;
  const first = tag.charCodeAt(0);
  const body = value[tag];
  return first >= 65 && first <= 90 && isObject(body) ? [tag, body] : undefined;
};
