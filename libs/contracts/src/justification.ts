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

/** One line of at most MAX_JUSTIFICATION_CHARS characters, or undefined when nothing is left. */
export const boundJustification = (raw: string | undefined): string | undefined => {
  if (raw === undefined) return undefined;
  const text = raw.replace(CONTROLS, ' ').replace(/\s+/g, ' ').trim();
  if (text === '') return undefined;
  const chars = Array.from(text);
  return chars.length <= MAX_JUSTIFICATION_CHARS ? text : `${chars.slice(0, MAX_JUSTIFICATION_CHARS - 1).join('').trimEnd()}…`;
};
