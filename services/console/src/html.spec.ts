import { describe, expect, it } from 'vitest';
import { html } from './html.js';

describe('html', () => {
  it('escapes every interpolated string, including attribute quotes', () => {
    const sql = `DELETE FROM t; -- <script>alert(1)</script>" onmouseover='x'`;
    expect(html`<pre title="${sql}">${sql}</pre>`.text).toBe(
      '<pre title="DELETE FROM t; -- &lt;script&gt;alert(1)&lt;/script&gt;&quot; onmouseover=&#39;x&#39;">DELETE FROM t; -- &lt;script&gt;alert(1)&lt;/script&gt;&quot; onmouseover=&#39;x&#39;</pre>',
    );
  });

  it('keeps fragments made by the tag and escapes those in lists', () => {
    const items = ['<b>', 'a&b'].map((item) => html`<li>${item}</li>`);
    expect(html`<ul>${items}</ul>`.text).toBe('<ul><li>&lt;b&gt;</li><li>a&amp;b</li></ul>');
  });
});
