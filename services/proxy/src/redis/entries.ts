import type { Governor, Verdict } from '../governance/governor.js';
import { millisecondsSince } from '../recording.js';
import type { Session } from '../ports.js';
import type { QueuedCommand } from './reply-stream.js';

/** An agent session on this connection: one per login (AUTH switches it). */
export interface SessionState extends Session {
  readonly governor: Governor;
  commands: number;
  expiryTimer: NodeJS.Timeout | undefined;
}

/** One command on its way through the connection, in arrival order. */
export interface Entry {
  readonly id: string;
  readonly name: string;
  readonly args: readonly Buffer[];
  readonly frame: Buffer;
  readonly session: SessionState | undefined;
  readonly started: number;
  /** local: Sluice answers; command: decided, then sent to the target. */
  readonly kind: 'local' | 'command';
  settled: boolean;
  verdict: Verdict | undefined;
  /** done: `reply` holds the bytes for the client. */
  status: 'waiting' | 'sent' | 'done';
  reply: Buffer | undefined;
  /** The commands an EXEC runs, by position, with their mask profiles. */
  txQueued: QueuedCommand[] | undefined;
  execAbort: boolean;
  /** The connection ends once this is answered, for this reason (QUIT's 'client quit'). */
  closeAfter: string | undefined;
  /** Sent inside MULTI: its reply is QUEUED (or an error), its result comes with EXEC. */
  queued: boolean;
  /** A RESP3 subscribe: push confirmations still to come before it is answered. */
  confirmations: number;
  /** The profile its reply is masked with, set when it is sent. */
  maskProfile: string | undefined;
}

/** A new entry, not yet settled (decided) nor answered. */
export const newEntry = (id: string, session: SessionState | undefined, name: string, args: readonly Buffer[], frame: Buffer, kind: Entry['kind']): Entry => ({
  id,
  name,
  args,
  frame,
  session,
  started: performance.now(),
  kind,
  settled: false,
  verdict: undefined,
  status: 'waiting',
  reply: undefined,
  txQueued: undefined,
  execAbort: false,
  closeAfter: undefined,
  queued: false,
  confirmations: 0,
  maskProfile: undefined,
});

/** Milliseconds since the entry was taken, as every adapter records a duration (millisecondsSince). */
export const elapsedMs = (entry: Pick<Entry, 'started'>): number => millisecondsSince(entry.started);
