/**
 * `\uXXXX` escapes (JSON's, JavaScript's, PostgreSQL E'' strings') spelled out as the characters
 * they stand for, where that leaves any JSON string they sit in valid: printable characters other
 * than `"` and `\`, and no surrogates. A value written `bob\u0040example.com` in a text that is not
 * one JSON document (a log line, a JSON prefix with trailing bytes, an SSE event cut short) is
 * plain to its reader, and must be to the detectors too. Returns `text` itself when none is there.
 */
export const spellUnicodeEscapes = (text: string): string => {
  if (!text.includes('\\u')) return text;
  return text.replace(/\\u([0-9a-fA-F]{4})/g, (escape, hex: string) => {
    const code = Number.parseInt(hex, 16);
    const kept = code < 0x20 || code === 0x22 || code === 0x5c || code === 0x7f || (code >= 0xd800 && code <= 0xdfff);
    return kept ? escape : String.fromCharCode(code);
  });
};
