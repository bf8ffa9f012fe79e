import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { RespFramer } from '@sluice/codec-resp';
import type { RedisResourceConfig } from '@sluice/config';
import { PendingJustification } from '../justification.js';
import { UNDECIDED_COMMAND_EVENTS, type GovernancePorts } from '../ports.js';
import type { RedisAdapterOptions } from './adapter.js';
import type { Entry, SessionState } from './entries.js';
import { ReplyStream } from './reply-stream.js';
import { WriteBatch } from './write-batch.js';

export type ClientSocket = Duplex & { remoteAddress?: string; remotePort?: number; setNoDelay?: (noDelay?: boolean) => unknown };

/** Commands queued before Sluice stops reading from the client (backpressure). */
export const MAX_QUEUED = 4096;

/**
 * What the parts of one Redis connection share: the sockets, the logged-in session, and the
 * commands in their three stages (pending an answer, waiting to be dispatched, in flight).
 * Internal to the Redis front door.
 */
export class ConnectionState {
  readonly upstreamFramer = new RespFramer('reply');
  readonly client: string;
  session: SessionState | undefined;
  upstream: Socket | undefined;
  protocol: 2 | 3 = 2;
  closed = false;
  /** The agent is past its share of the audit queue: its client is not read until its events are acknowledged. */
  clientHeldForAudit = false;
  /**
   * Why the target is not read: its replies' events wait for the bus beyond the agent's share
   * ('audit'), or the client does not read what it was sent ('client': a subscriber that never
   * reads, a pipeline of large replies it leaves unread, would otherwise be buffered here without bound).
   */
  readonly #targetHolds = new Set<'audit' | 'client'>();

  /** Every entry not yet answered, in arrival order. */
  readonly pending: Entry[] = [];
  /** Entries not yet sent upstream (or answered locally), in order. */
  readonly toDispatch: Entry[] = [];
  /** Entries sent upstream, waiting for their reply frame. */
  readonly inflight: Entry[] = [];
  holding = false;
  /** A HELLO that switches the protocol is in flight: dispatch waits for its reply. */
  protocolPending = false;
  readonly holdAbort = new AbortController();
  readonly justification = new PendingJustification();

  /** Transactions, subscriber mode and MONITOR: how upstream frames pair with commands. */
  readonly stream = new ReplyStream();

  readonly out: WriteBatch;

  constructor(
    readonly resource: RedisResourceConfig,
    readonly options: RedisAdapterOptions,
    readonly socket: ClientSocket,
    readonly ports: GovernancePorts,
    /** Ends the connection once (RedisConnection's close). */
    readonly close: (reason: string) => void,
  ) {
    this.client = `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? 0}`;
    this.out = new WriteBatch(socket, () => this.upstream, () => this.#clientFull());
  }

  readonly protocolSwitches = new Map<Entry, 2 | 3>();

  /** Waiting for every command taken so far to be answered (see allAnswered). */
  readonly #answeredWaiters: Array<() => void> = [];

  /**
   * Resolves once every command taken so far has been answered to the client, or the connection
   * closed: a re-authentication waits for them, as Redis takes a connection's commands in order.
   */
  allAnswered(): Promise<void> {
    if (this.pending.length === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.#answeredWaiters.push(resolve));
  }

  /** Wakes allAnswered's waiters: nothing is pending any more, or the connection closed. */
  wakeAnswered(): void {
    if (this.#answeredWaiters.length > 0) for (const wake of this.#answeredWaiters.splice(0)) wake();
  }

  /**
   * A command taken waits for its verdict and its turn: its events are to come, and count
   * against its agent's share (AuditPort.coming) until it is dispatched (taken off toDispatch).
   * What is still waiting when the session ends is given back by the audit port.
   */
  enqueue(entry: Entry): void {
    this.pending.push(entry);
    this.toDispatch.push(entry);
    if (entry.kind === 'command' && entry.session) this.ports.audit.coming?.(entry.session.id, UNDECIDED_COMMAND_EVENTS);
  }

  /** The next entry to dispatch, taken off toDispatch: its events are no longer to come from it (see enqueue). */
  takeNext(): Entry {
    const entry = this.toDispatch.shift()!;
    if (entry.kind === 'command' && entry.session) this.ports.audit.coming?.(entry.session.id, -UNDECIDED_COMMAND_EVENTS);
    return entry;
  }

  /** A command refused inside MULTI makes EXEC abort, as a queueing error does in Redis. */
  markDirty(): void {
    this.stream.markDirty();
  }

  /** Writes finished replies to the client in arrival order. */
  emit(): void {
    while (this.pending.length > 0 && this.pending[0]!.status === 'done') {
      const entry = this.pending.shift()!;
      if (entry.reply && entry.reply.length > 0) this.writeClient(entry.reply);
      if (entry.closeAfter !== undefined) {
        this.flush();
        this.close(entry.closeAfter);
        return;
      }
    }
    if (this.pending.length === 0) this.wakeAnswered();
    if (this.pending.length <= MAX_QUEUED / 2 && this.socket.isPaused() && !this.clientHeldForAudit) this.socket.resume();
  }

  /** Stops reading the target for `reason` (it may already be held for another). */
  holdTarget(reason: 'audit' | 'client'): void {
    this.#targetHolds.add(reason);
    this.upstream?.pause();
  }

  /** Reads the target again once nothing holds it. */
  releaseTarget(reason: 'audit' | 'client'): void {
    if (!this.#targetHolds.delete(reason) || this.#targetHolds.size > 0 || this.closed) return;
    this.upstream?.resume();
  }

  /** The client's socket holds as much as it may unread: the target waits until it drains. */
  #clientFull(): void {
    if (this.#targetHolds.has('client')) return;
    this.holdTarget('client');
    this.socket.once('drain', () => this.releaseTarget('client'));
  }

  writeClient(bytes: Buffer): void {
    this.out.toClient(bytes);
  }

  writeUpstream(bytes: Buffer): void {
    this.out.toTarget(bytes);
  }

  flush(): void {
    this.out.flush();
  }
}
