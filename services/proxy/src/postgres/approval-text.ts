/**
 * The normalised text bound into an approval hash: the exact statement, without outer whitespace
 * or its trailing semicolons. A backwards scan, linear in the text: the regular expression it
 * replaces (`/;+\s*$/`) backtracked quadratically on a long run of semicolons followed by one
 * other character (40,000 of them held the event loop for 1.8 s).
 */
export const normaliseSql = (text: string): string => {
  const trimmed = text.trim();
  let end = trimmed.length;
  while (end > 0 && trimmed.charCodeAt(end - 1) === 0x3b /* ; */) end--;
  return trimmed.slice(0, end);
};
