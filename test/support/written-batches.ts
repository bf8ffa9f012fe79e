import { createRequire } from 'node:module';

/** RFC 8785 JSON, by an implementation other than Sluice's own, so a test does not grade its own homework. */
export const canonicalize = createRequire(import.meta.url)('canonicalize') as (input: unknown) => string;

/** `[canonical,…]`: the bytes a Sluice publisher writes for these events (taken as written by the audit service). */
export const canonicalBatch = (events: readonly Record<string, unknown>[]): Buffer => Buffer.from(`[${events.map((one) => canonicalize(one)).join(',')}]`, 'utf8');
