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

/**
 * Visits every wrapped node of a tree depth first. `enter` returns false to skip the node's
 * children; `leave` runs after them.
 */
export const walkTree = (value: unknown, enter: (tag: string, node: Node) => boolean, leave?: (tag: string, node: Node) => void): void => {
  if (Array.isArray(value)) {
    for (const item of value) walkTree(item, enter, leave);
    return;
  }
  const wrapped = unwrap(value);
  if (!wrapped) {
    if (isObject(value)) for (const key in value) walkTree(value[key], enter, leave);
    return;
  }
  const [tag, node] = wrapped;
  if (!enter(tag, node)) return;
  for (const key in node) walkTree(node[key], enter, leave);
  leave?.(tag, node);
};
