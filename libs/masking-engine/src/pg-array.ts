/**
 * PostgreSQL array text format (`{a,"b c",NULL,{d,e}}`), enough to mask element-wise and write the
 * array back. Arrays with explicit bounds (`[0:1]={…}`) or another delimiter are not parsed
 * (undefined): the caller withholds them.
 * @see https://www.postgresql.org/docs/current/arrays.html#ARRAYS-IO
 */
export type ArrayNode = readonly ArrayNode[] | string | null;

export const parseArray = (text: string): ArrayNode[] | undefined => {
  let position = 0;
  const parseLevel = (): ArrayNode[] | undefined => {
    if (text[position] !== '{') return undefined;
    position++;
    const items: ArrayNode[] = [];
    if (text[position] === '}') {
      position++;
      return items;
    }
    for (;;) {
      const char = text[position];
      if (char === '{') {
        const nested = parseLevel();
        if (!nested) return undefined;
        items.push(nested);
      } else if (char === '"') {
        position++;
        let value = '';
        for (;;) {
          const next = text[position];
          if (next === undefined) return undefined;
          if (next === '\\') {
            const escaped = text[position + 1];
            if (escaped === undefined) return undefined;
            value += escaped;
            position += 2;
          } else if (next === '"') {
            position++;
            break;
          } else {
            value += next;
            position++;
          }
        }
        items.push(value);
      } else {
        const start = position;
        while (position < text.length && text[position] !== ',' && text[position] !== '}') {
          if (text[position] === '{' || text[position] === '"') return undefined;
          position++;
        }
        const raw = text.slice(start, position).trim();
        items.push(raw.toUpperCase() === 'NULL' ? null : raw);
      }
      const separator = text[position];
      position++;
      if (separator === '}') return items;
      if (separator !== ',') return undefined;
    }
  };
  const result = parseLevel();
  return result && position === text.length ? result : undefined;
};

const needsQuotes = (value: string): boolean => value === '' || /[{}",\\\s]/.test(value) || value.toUpperCase() === 'NULL';

export const serializeArray = (items: readonly ArrayNode[]): string =>
  `{${items
    .map((item) => {
      if (item === null) return 'NULL';
      if (typeof item !== 'string') return serializeArray(item);
      return needsQuotes(item) ? `"${item.replace(/[\\"]/g, '\\$&')}"` : item;
    })
    .join(',')}}`;
