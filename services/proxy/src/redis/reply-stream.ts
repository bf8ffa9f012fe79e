import { encodeValue, type RespValue } from '@sluice/codec-resp';
import { NOT_IN_TRANSACTION, SUBSCRIBE_COMMANDS, SUBSCRIBER_CONTEXT, UNSUBSCRIBE_COMMANDS } from './commands.js';

/** A command queued inside MULTI: its EXEC reply element is masked as its own reply would be. */
export interface QueuedCommand {
  readonly name: string;
  readonly args: readonly Buffer[];
  readonly maskProfile: string | undefined;
}

/** How one dispatched command's reply comes back. */
export interface Dispatch {
  /** A plain reply frame answers it; otherwise its replies are part of a stream. */
  readonly expectsReply: boolean;
  /** Queued inside MULTI: its reply is QUEUED (or an error), its result comes with EXEC. */
  readonly queued: boolean;
  /** EXEC: the commands it runs, by position. */
  readonly execQueue: readonly QueuedCommand[] | undefined;
  /** EXEC of a transaction Sluice refused a part of: sent as DISCARD, answered EXECABORT. */
  readonly execAbort: boolean;
}

/**
 * The shape of the upstream reply stream, followed in dispatch order so that every reply frame is
 * paired with the command it answers: transactions (what EXEC's array holds), RESP2 subscriber
 * mode (tracked per channel kind, as Redis counts them) and MONITOR. Commands that would make
 * the pairing unknowable are refused here.
 */
export class ReplyStream {
  mode: 'replies' | 'pubsub' | 'monitor' = 'replies';
  /** The mask profile for streamed frames: that of the latest SUBSCRIBE-family command or MONITOR. */
  profile: string | undefined;
  /** RESP2 subscriptions Redis last confirmed: channels and patterns, and shard channels (counted apart). */
  private readonly subscriptions = { channels: 0, shards: 0 };
  private inTransaction = false;
  private transactionDirty = false;
  private transactionQueue: QueuedCommand[] = [];

  /** A command refused inside MULTI makes EXEC abort, as a queueing error does in Redis. */
  markDirty(): void {
    if (this.inTransaction) this.transactionDirty = true;
  }

  /**
   * The error to answer instead of sending the command, or undefined: mode changes queued
   * inside MULTI (they would take effect only at EXEC), and in RESP2 subscriber or MONITOR mode
   * anything whose reply Redis would not send as a plain reply.
   */
  refusal(name: string): string | undefined {
    if (this.inTransaction && NOT_IN_TRANSACTION.has(name)) {
      this.transactionDirty = true;
      return 'ERR Command not allowed inside a transaction';
    }
    if (this.mode === 'monitor' && name !== 'QUIT') return 'ERR only QUIT is allowed after MONITOR through Sluice';
    if (this.mode === 'pubsub' && !SUBSCRIBER_CONTEXT.has(name)) {
      return `ERR Can't execute '${name.toLowerCase()}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`;
    }
    return undefined;
  }

  /**
   * The replies Redis would send to an unsubscribe while not subscribed in RESP2 (one per channel,
   * or one without), for Sluice to answer itself: none of them would answer a waiting command.
   */
  unsubscribedReplies(name: string, args: readonly Buffer[], protocol: 2 | 3): Buffer | undefined {
    if (protocol !== 2 || this.mode !== 'replies' || !UNSUBSCRIBE_COMMANDS.has(name)) return undefined;
    const kind = Buffer.from(name.toLowerCase());
    const channels = args.length > 1 ? args.slice(1) : [undefined];
    return Buffer.concat(
      channels.map((channel) =>
        encodeValue({
          type: 'array',
          items: [{ type: 'bulk', value: kind }, channel ? { type: 'bulk', value: channel } : { type: 'null', form: '$' }, { type: 'integer', value: 0n }],
        }),
      ),
    );
  }

  /** Follows a command being sent upstream (after `refusal` let it through). */
  dispatch(name: string, args: readonly Buffer[], maskProfile: string | undefined, protocol: 2 | 3): Dispatch {
    const plain: Dispatch = { expectsReply: true, queued: false, execQueue: undefined, execAbort: false };
    switch (name) {
      case 'MULTI':
        // A nested MULTI is an error in Redis that leaves the open transaction as it is.
        if (this.inTransaction) return plain;
        this.inTransaction = true;
        this.transactionDirty = false;
        this.transactionQueue = [];
        return plain;
      case 'EXEC': {
        const execAbort = this.inTransaction && this.transactionDirty;
        this.inTransaction = false;
        return { ...plain, execQueue: this.transactionQueue, execAbort };
      }
      case 'DISCARD':
        this.inTransaction = false;
        return plain;
      case 'MONITOR':
        this.mode = 'monitor';
        this.profile = maskProfile;
        return { ...plain, expectsReply: false };
      default:
        if (SUBSCRIBE_COMMANDS.has(name)) {
          this.profile = maskProfile;
          // RESP3 confirms with pushes; RESP2 switches the connection to a stream of arrays.
          if (protocol === 2 && !UNSUBSCRIBE_COMMANDS.has(name)) this.mode = 'pubsub';
          return { ...plain, expectsReply: false };
        }
        // In RESP2 subscriber mode replies are part of the stream too.
        if (this.mode !== 'replies') return { ...plain, expectsReply: false };
        // WATCH is refused inside MULTI without queueing; everything else (UNWATCH too) is queued.
        if (this.inTransaction && name !== 'WATCH') {
          this.transactionQueue.push({ name, args, maskProfile });
          return { ...plain, queued: true };
        }
        return plain;
    }
  }

  /**
   * Follows a streamed frame: RESP2 (un)subscribe confirmations carry the subscriptions left of
   * their kind; subscriber mode ends when none of either kind is left, as it does in Redis.
   */
  streamed(value: RespValue): void {
    if (this.mode !== 'pubsub' || value.type !== 'array' || value.items.length !== 3) return;
    const [kind, , count] = value.items;
    if (kind?.type !== 'bulk' || count?.type !== 'integer') return;
    const name = kind.value.toString('latin1').toLowerCase();
    if (!/^(p|s)?(un)?subscribe$/.test(name)) return;
    if (name.startsWith('s')) this.subscriptions.shards = Number(count.value);
    else this.subscriptions.channels = Number(count.value);
    if (name.includes('unsubscribe') && this.subscriptions.channels === 0 && this.subscriptions.shards === 0) this.mode = 'replies';
  }
}
