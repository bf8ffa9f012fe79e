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
  /**
   * A RESP3 subscribe: it is answered by this many push confirmations, or by one error frame
   * (arity, ACL), which must not be taken for the reply of the command after it.
   */
  readonly confirmations: number;
}

/** Subscribe commands that need at least one channel (Redis arity -2). */
const SUBSCRIBE_NEEDS_CHANNEL = new Set(['SUBSCRIBE', 'PSUBSCRIBE', 'SSUBSCRIBE']);

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
  /** Subscriptions Redis last confirmed (either protocol): channels and patterns, and shard channels (counted apart). */
  private readonly subscriptions = { channels: 0, shards: 0 };
  /** RESP3 subscribes sent and not yet answered (all their confirmations, or an error). */
  private pendingSubscribes = 0;
  private inTransaction = false;
  /**
   * CLIENT TRACKING may be on: Redis pushes an invalidation whenever a key this connection read
   * (or, BCAST, any key under its prefixes) changes, however long after. Set when an ON is sent,
   * cleared only by a plain `CLIENT TRACKING OFF` outside MULTI (which cannot fail): an ON Redis
   * refused keeps it set, the safe side.
   */
  private tracking = false;
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
  refusal(name: string, args: readonly Buffer[], protocol: 2 | 3): string | undefined {
    // Redis refuses these itself, but with an error frame where a confirmation was expected: the
    // proxy would otherwise take that error for the next command's reply, or believe the
    // connection subscribed when it is not.
    if (SUBSCRIBE_NEEDS_CHANNEL.has(name) && args.length < 2) return `ERR wrong number of arguments for '${name.toLowerCase()}' command`;
    // A RESP3 connection that is subscribed and switches to RESP2 gets its messages as plain
    // arrays, indistinguishable from replies: refused while any subscription may remain.
    if (name === 'HELLO' && protocol === 3 && args[1]?.toString() === '2' && this.maySubscribe()) {
      return 'ERR HELLO 2 is refused through Sluice while the connection may be subscribed; unsubscribe first';
    }
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
    const plain: Dispatch = { expectsReply: true, queued: false, execQueue: undefined, execAbort: false, confirmations: 0 };
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
      case 'CLIENT': {
        if (word(args[1]) !== 'TRACKING') return this.#queueOrPlain(name, args, maskProfile, plain);
        const state = word(args[2]);
        if (state === 'ON') this.tracking = true;
        else if (state === 'OFF' && args.length === 3 && !this.inTransaction) this.tracking = false;
        return this.#queueOrPlain(name, args, maskProfile, plain);
      }
      case 'MONITOR':
        this.mode = 'monitor';
        this.profile = maskProfile;
        return { ...plain, expectsReply: false };
      default:
        if (SUBSCRIBE_COMMANDS.has(name)) {
          this.profile = maskProfile;
          // Redis confirms each channel named, duplicates included (arity ≥ 2 was checked in refusal).
          if (protocol === 3 && !UNSUBSCRIBE_COMMANDS.has(name)) {
            this.pendingSubscribes++;
            return { ...plain, confirmations: args.length - 1 };
          }
          // RESP3 confirms with pushes; RESP2 switches the connection to a stream of arrays.
          if (protocol === 2 && !UNSUBSCRIBE_COMMANDS.has(name)) this.mode = 'pubsub';
          return { ...plain, expectsReply: false };
        }
        return this.#queueOrPlain(name, args, maskProfile, plain);
    }
  }

  /** A command with a plain reply: part of the stream in RESP2 subscriber mode, queued inside MULTI. */
  #queueOrPlain(name: string, args: readonly Buffer[], maskProfile: string | undefined, plain: Dispatch): Dispatch {
    // In RESP2 subscriber mode replies are part of the stream too.
    if (this.mode !== 'replies') return { ...plain, expectsReply: false };
    // WATCH is refused inside MULTI without queueing; everything else (UNWATCH too) is queued.
    if (this.inTransaction && name !== 'WATCH') {
      this.transactionQueue.push({ name, args, maskProfile });
      return { ...plain, queued: true };
    }
    return plain;
  }

  /**
   * Follows a streamed frame: RESP2 (un)subscribe confirmations carry the subscriptions left of
   * their kind; subscriber mode ends when none of either kind is left, as it does in Redis.
   */
  streamed(value: RespValue): void {
    const confirmation = confirmationOf(value);
    // A RESP2 array outside subscriber mode is a reply, not a confirmation.
    if (!confirmation || (value.type === 'array' && this.mode !== 'pubsub')) return;
    const { kind, count } = confirmation;
    if (kind === 'ssubscribe' || kind === 'sunsubscribe') this.subscriptions.shards = count;
    else this.subscriptions.channels = count;
    if (this.mode === 'pubsub' && kind.includes('unsubscribe') && this.subscriptions.channels === 0 && this.subscriptions.shards === 0) this.mode = 'replies';
  }

  /** A RESP3 subscribe was answered: confirmed in full, or refused by Redis. */
  subscribeSettled(): void {
    this.pendingSubscribes--;
  }

  /**
   * Why the agent's identity cannot change now (a re-authentication ends its session and starts
   * another), or undefined. Inside MULTI the commands queued so far would run, and be recorded,
   * at EXEC under the new session; while subscribed (or monitoring) the frames still to come were
   * asked for by the old session, under its masking profile. Refused rather than guessed.
   */
  identityLocked(name: string): string | undefined {
    if (this.inTransaction) return `ERR ${name} inside MULTI is refused through Sluice: a re-authentication cannot be queued in a transaction; EXEC or DISCARD first`;
    if (this.mode === 'monitor') return `ERR ${name} after MONITOR is refused through Sluice`;
    if (this.mode === 'pubsub' || this.maySubscribe()) return `ERR ${name} while subscribed is refused through Sluice: the messages to come belong to this session; unsubscribe first`;
    if (this.tracking) return `ERR ${name} while CLIENT TRACKING is on is refused through Sluice: the invalidations to come belong to this session; CLIENT TRACKING OFF first`;
    return undefined;
  }

  /** Subscribed, or a subscribe is still on its way: pushed messages may come. */
  private maySubscribe(): boolean {
    return this.pendingSubscribes > 0 || this.subscriptions.channels > 0 || this.subscriptions.shards > 0;
  }
}

/**
 * A (un)subscribe confirmation: a RESP2 array or a RESP3 push of `[kind, channel, count]`, with
 * its kind (`subscribe`, `punsubscribe`, …) and the subscriptions left; undefined for anything
 * else (messages included).
 */
export const confirmationOf = (value: RespValue): { readonly kind: string; readonly count: number } | undefined => {
  if ((value.type !== 'array' && value.type !== 'push') || value.items.length !== 3) return undefined;
  const [kind, , count] = value.items;
  if (kind?.type !== 'bulk' || count?.type !== 'integer') return undefined;
  const name = kind.value.toString('latin1').toLowerCase();
  return /^(p|s)?(un)?subscribe$/.test(name) ? { kind: name, count: Number(count.value) } : undefined;
};

/** A command word (subcommand, option) in upper case; '' when absent. */
const word = (arg: Buffer | undefined): string => arg?.toString('latin1').toUpperCase() ?? '';
