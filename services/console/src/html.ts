/**
 * HTML built only through the `html` tag: every interpolated value is escaped unless it is
 * itself a `SafeHtml` made by this tag. What the console shows (SQL texts, subjects, reasons,
 * result rows) is written by agents, so one unescaped value would let an agent script an
 * approver's browser into approving its own request.
 */
export class SafeHtml {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

export const escapeHtml = (value: string): string => value.replace(/[&<>"'`]/g, (char) => ESCAPES[char]!);

type Interpolated = SafeHtml | string | number | boolean | null | undefined | readonly Interpolated[];

const render = (value: Interpolated): string => {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
};

export const html = (strings: TemplateStringsArray, ...values: Interpolated[]): SafeHtml => {
  let out = strings[0]!;
  values.forEach((value, index) => {
    out += render(value) + strings[index + 1]!;
  });
  return new SafeHtml(out);
};
