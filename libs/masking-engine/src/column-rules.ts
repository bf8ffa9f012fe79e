import type { MaskingProfileConfig } from '@sluice/config';
import type { ColumnInfo, ColumnSource, Strategy } from './api.js';

export interface ColumnRule {
  /** Used in counts as `column:<label>`: the rule's own text, never a value. */
  readonly label: string;
  readonly strategy: Strategy | undefined;
  matches(column: ColumnInfo | ColumnSource): boolean;
}

/** A regex from the config; a leading `(?i)` (not JavaScript syntax) makes it case-insensitive. */
export const configRegExp = (source: string, flags = ''): RegExp =>
  source.startsWith('(?i)') ? new RegExp(source.slice(4), `${flags}i`) : new RegExp(source, flags);

/**
 * `schema.table.column` glob: `*` is any run within one part, `?` one character. A pattern with
 * fewer parts matches the trailing parts (`customers.ssn` in any schema, `ssn` in any table).
 * PostgreSQL folds unquoted identifiers to lower case, so the match ignores case.
 */
const globMatcher = (glob: string): GlobMatcher => {
  const parts = glob.split('.').length;
  const source = glob
    .split('')
    .map((char) => (char === '*' ? '[^.]*' : char === '?' ? '[^.]' : char.replace(/[\\^$+.()|{}[\]]/g, '\\$&')))
    .join('');
  const pattern = new RegExp(`^${source}$`, 'i');
  const tablePart = parts > 1 ? new RegExp(`^${source.slice(0, source.lastIndexOf('\\.'))}$`, 'i') : undefined;
  const matches = (qualifiedName: string | undefined, name: string): boolean => {
    const subject = qualifiedName ?? name;
    if (!subject) return false;
    const tail = subject.split('.').slice(-parts);
    return tail.length === parts && pattern.test(tail.join('.'));
  };
  // Any column of `table`: the rule's column part may match some column, so only its table part is checked.
  const mayMatchColumnOf = (table: string | undefined): boolean => {
    if (!tablePart || table === undefined) return true;
    const tail = table.split('.').slice(-(parts - 1));
    return tail.length === parts - 1 && tablePart.test(tail.join('.'));
  };
  return { matches, mayMatchColumnOf };
};

interface GlobMatcher {
  matches(qualifiedName: string | undefined, name: string): boolean;
  mayMatchColumnOf(table: string | undefined): boolean;
}

/**
 * The table's own name for the column, from `schema.table.column`: an alias (`ssn AS x`, `people
 * AS p(a, b, c)`) renames the output, not the value, so a rule by name is tested on both.
 */
const realColumnName = (column: ColumnInfo | ColumnSource): string => {
  const qualified = column.qualifiedName;
  if (qualified === undefined) return column.name;
  return qualified.split('.').slice(2).join('.') || column.name;
};

export const compileColumnRule = (rule: MaskingProfileConfig['columns'][number]): ColumnRule => {
  const byName = rule.match ? configRegExp(rule.match) : undefined;
  const byColumn = rule.column ? globMatcher(rule.column) : undefined;
  return {
    label: rule.match ?? rule.column ?? '',
    strategy: rule.strategy,
    // Both matchers given: both must hold (a name pattern narrowed to one table).
    matches: (column) => {
      if ('anyColumn' in column && column.anyColumn) return !byColumn || byColumn.mayMatchColumnOf(column.table);
      return (!byName || byName.test(column.name) || byName.test(realColumnName(column))) && (!byColumn || byColumn.matches(column.qualifiedName, column.name));
    },
  };
};
