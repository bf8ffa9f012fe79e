const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Parses `500ms`, `30s`, `2m`, `1h`, `7d`, `2w` (or a bare number of seconds) into milliseconds. */
export const parseDuration = (text: string | number): number | undefined => {
  if (typeof text === 'number') return Number.isFinite(text) && text >= 0 ? text * 1000 : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/.exec(text);
  if (!match) return undefined;
  return Math.round(Number(match[1]) * UNITS_MS[match[2] ?? 's']!);
};

/**
 * A point in time written as a look-back from `now` (`30m`, `7d`, `2w`), an ISO time, or epoch
 * milliseconds; undefined when it is none of them. The audit API and the CLI read `since` with it.
 */
export const parsePointInTime = (text: string, now = Date.now()): Date | undefined => {
  const trimmed = text.trim();
  // A bare number is epoch milliseconds here, not seconds as in config durations.
  const lookBackMs = /^\d+$/.test(trimmed) ? undefined : parseDuration(trimmed);
  const date = lookBackMs !== undefined ? new Date(now - lookBackMs) : new Date(/^\d+$/.test(trimmed) ? Number(trimmed) : trimmed);
  return Number.isNaN(date.getTime()) ? undefined : date;
};
