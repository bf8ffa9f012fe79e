import type { CloudEvent } from './events.js';

/**
 * What the audit store keeps and its API serves, in the API's JSON shape: the event store writes
 * these, the audit service sends them, the console and the CLI read them. Defined once here.
 */

/** A stored event: the CloudEvent (with any extension attribute) plus its place in the store and its chain. */
export type StoredEvent = CloudEvent & Readonly<Record<string, unknown>> & { readonly seq: number; readonly hash: string; readonly prev_hash: string };

/** One session as the sessions list shows it: counted from its events. */
export interface SessionSummary {
  readonly id: string;
  readonly session_id: string;
  readonly subject: string | null;
  readonly resource: string | null;
  readonly protocol: string | null;
  readonly started_at: string;
  readonly ended_at: string | null;
  readonly commands: number;
  readonly denials: number;
  readonly approvals: number;
  readonly masked_values: number;
  readonly events: number;
  readonly rejected: boolean;
}
