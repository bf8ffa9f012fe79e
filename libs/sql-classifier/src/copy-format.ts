import { list, str, type Node } from './parse-tree.js';

/** The line format of a COPY TO. */
export interface CopyFormat {
  readonly format: 'text' | 'csv' | 'binary';
  readonly delimiter: string;
  readonly quote: string;
  readonly escape: string;
  /** The first line names the columns. */
  readonly header: boolean;
}

/** The line format a COPY TO writes, from its options. @see https://www.postgresql.org/docs/current/sql-copy.html */
export const copyFormat = (node: Node): CopyFormat => {
  let format: CopyFormat['format'] = 'text';
  let delimiter: string | undefined;
  let quote: string | undefined;
  let escape: string | undefined;
  let header = false;
  for (const option of list(node.options)) {
    const def = (option as { DefElem?: Node }).DefElem;
    const name = str(def?.defname);
    const arg = def?.arg as { String?: { sval?: string }; Integer?: { ival?: number }; Boolean?: { boolval?: boolean } } | undefined;
    const value = arg?.String?.sval ?? (arg?.Integer ? String(arg.Integer.ival ?? 0) : undefined) ?? (arg?.Boolean ? String(arg.Boolean.boolval ?? false) : undefined);
    if (name === 'format') format = value === 'csv' ? 'csv' : value === 'binary' ? 'binary' : 'text';
    else if (name === 'delimiter') delimiter = value;
    else if (name === 'quote') quote = value;
    else if (name === 'escape') escape = value;
    else if (name === 'header') header = value === undefined || !['false', 'off', '0', 'f', 'no', 'n'].includes(value.toLowerCase());
  }
  const csv = format === 'csv';
  return { format, delimiter: delimiter ?? (csv ? ',' : '\t'), quote: quote ?? '"', escape: escape ?? quote ?? '"', header };
};
