/**
 * The justification an agent gives for a command held for approval: free text the agent writes,
 * shown to approvers and recorded in approval.requested. It never changes a decision. Both the
 * proxy and the approval service pass it through `boundJustification`, so a long or crafted text
 * cannot bloat the event or make the console show something other than what was written.
 */

/** Longest justification kept, in characters; longer ones are cut and end in `…`. */
export const MAX_JUSTIFICATION_CHARS = 500;

// C0/C1 controls (line breaks included), and the bidirectional controls that can make text
// read differently from what it is (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069).
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]+/g;

/**
 * One line of at most `maxChars` characters (MAX_JUSTIFICATION_CHARS unless told), or undefined
 * when nothing is left. Pass `Infinity` to make the line without cutting it (to mask it first).
 */
export const boundJustification = (raw: string | undefined, maxChars = MAX_JUSTIFICATION_CHARS): string | undefined => {
  if (raw === undefined) return undefined;
  const text = raw.replace(CONTROLS, ' ').replace(/\s+/g, ' ').trim();
  if (text === '') return undefined;
  if (text.length <= maxChars) return text;
  const chars = Array.from(text);
  return chars.length <= maxChars ? text : `${chars.slice(0, maxChars - 1).join('').trimEnd()}…`;
};

/**
 * Text for a terminal: every control and bidirectional character (the same set as above) shown as
 * a visible `\u{…}` escape, so a command or an agent's words printed by the CLI cannot move the
 * cursor, rewrite earlier lines, set the clipboard (OSC 52) or reorder what the approver reads.
 */
export const visibleControls = (text: string): string =>
  text.replace(CONTROLS, (run) => Array.from(run, (char) => `\\u{${char.codePointAt(0)!.toString(16)}}`).join(''));
