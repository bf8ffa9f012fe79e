/**
 * The one normal form of an HTTP request path, used both to decide a request and to forward
 * it, so the target never sees a path other than the one the policy judged. Percent-escapes of
 * unreserved characters are decoded once, `.`/`..` segments resolved, repeated slashes collapsed
 * and the query string dropped. Returns undefined for a path that cannot be normalised safely,
 * because a target could route it differently from its normal form: `;` (matrix parameters,
 * which many servers strip before routing) raw or escaped, escaped slashes or backslashes, an
 * escaped `%` (decoded twice by some targets), NUL, escapes that are not UTF-8, climbing above
 * the root.
 * @see https://www.rfc-editor.org/rfc/rfc3986#section-6.2.2
 */
export const normalizeHttpPath = (rawPath: string): string | undefined => {
  const end = rawPath.search(/[?#]/);
  const pathOnly = end === -1 ? rawPath : rawPath.slice(0, end);
  // Most paths are in normal form already (every request of an agent that asks for the same
  // path, keep-alive after keep-alive): one test instead of decoding, splitting and joining.
  return ALREADY_NORMAL.test(pathOnly) ? pathOnly : normalizeHttpPathInFull(pathOnly);
};

/**
 * Paths the full algorithm returns unchanged: segments that are not empty, `.` or `..`, of
 * characters it neither decodes nor refuses (no `%`, `;`, `\\`, NUL), and perhaps a trailing slash;
 * `/` alone, but not the empty path.
 */
const ALREADY_NORMAL = /^(?=\/)(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9\-._~!$&'()*+,=:@]+)*\/?$/;

/** normalizeHttpPath's general case, for any path (its query, if any, is dropped); exported for the spec that checks the shortcut against it. */
export const normalizeHttpPathInFull = (rawPath: string): string | undefined => {
  const pathOnly = rawPath.split(/[?#]/, 1)[0] ?? '';
  if (!pathOnly.startsWith('/')) return undefined;
  let decoded: string;
  try {
    decoded = pathOnly.replace(/%[0-9a-fA-F]{2}/g, (escape) => {
      const char = String.fromCharCode(parseInt(escape.slice(1), 16));
      // Keep escapes that would change the path's structure if decoded.
      return /[A-Za-z0-9\-._~!$&'()*+,=:@]/.test(char) ? char : escape.toUpperCase();
    });
    if (/%2F|%5C|%00|%3B|%25/i.test(decoded) || /[\\\0;]/.test(decoded)) return undefined;
    decodeURIComponent(decoded);
  } catch {
    return undefined;
  }
  const segments: string[] = [];
  for (const segment of decoded.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (segments.length === 0) return undefined;
      segments.pop();
      continue;
    }
    segments.push(segment);
  }
  const trailingSlash = decoded.length > 1 && decoded.endsWith('/') && segments.length > 0;
  return '/' + segments.join('/') + (trailingSlash ? '/' : '');
};
