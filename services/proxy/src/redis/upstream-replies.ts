import type { Socket } from 'node:net';
import { decodeReply, encodeError } from '@sluice/codec-resp';
import { SluiceErrorCode } from '@sluice/contracts';
import type { CommandDispatch } from './command-dispatch.js';
import type { ConnectionState } from './connection-state.js';
import { elapsedMs, type Entry } from './entries.js';
import { decodeAndMask, errorCodeOf, errorTextOf, maskPushed, recordResult, type MaskedReply } from './reply-results.js';
import { confirmationOf } from './reply-stream.js';

const WITHHELD = 'ERR result withheld: masking unavailable';
const EXECABORT = 'EXECABORT Transaction discarded because of previous errors.';

/**
 * The target's replies, paired with the commands in flight (pushes and subscribe confirmations
 * out of band), masked, recorded and queued for the client in the commands' order.
 */
export class UpstreamReplies {
  /** Frames read from the target but not taken yet: the agent went past its share within a read of pushed messages. */
  #held: Buffer[] = [];
  /** Set when the frame just taken was forwarded as pushed (no command asked for it). */
  #pushed = false;

  constructor(
    private readonly state: ConnectionState,
    private readonly dispatch: CommandDispatch,
  ) {}

  #onUpstreamFrame(frame: Buffer): void {
    const head = this.state.inflight[0];
    // RESP3 pushes (pub/sub messages, invalidations) are out of band, except the confirmations
    // that answer a subscribe: the subscribe is answered once all of them came.
    if (frame[0] === 0x3e) {
      if (head && head.confirmations > 0 && this.#confirms(head, frame)) {
        this.#forwardStreamed(frame);
        if (--head.confirmations === 0) {
          this.state.inflight.shift();
          this.state.stream.subscribeSettled();
          head.status = 'done';
          head.reply = Buffer.alloc(0);
          this.dispatch.recordStreamed(head, 'stream');
          this.state.emit();
        }
        return;
      }
      return this.#forwardStreamed(frame);
    }
    const entry = this.state.inflight.shift();
    if (!entry) return this.#forwardStreamed(frame);
    // A subscribe answered by a plain frame (an error: arity, ACL) was not confirmed at all.
    if (entry.confirmations > 0) {
      entry.confirmations = 0;
      this.state.stream.subscribeSettled();
    }
    this.#complete(entry, frame);
    this.state.emit();
  }

  /** Is this push a confirmation of the subscribe command waiting for its answer? */
  #confirms(entry: Entry, frame: Buffer): boolean {
    try {
      return confirmationOf(decodeReply(frame))?.kind === entry.name.toLowerCase();
    } catch {
      return false;
    }
  }

  /** A frame that answers no queued command: masked with the subscription's profile and sent on. */
  #forwardStreamed(frame: Buffer): void {
    this.state.emit();
    let shown: MaskedReply | undefined;
    try {
      const value = decodeReply(frame);
      shown = maskPushed(value, frame, this.state.ports.masking.masker(this.state.stream.profile), this.state.protocol, this.state.stream.mode === 'monitor');
      this.state.stream.streamed(value);
    } catch {
      shown = undefined;
    }
    this.#pushed = true;
    // Pushed messages and confirmations are data the agent receives: each is recorded, as it was
    // sent (masked), as a result of the session (no command id of its own).
    if (this.state.session && shown) recordResult(this.state.ports.audit, this.state.ports.recording, this.state.session.id, 'push', shown);
    this.state.writeClient(shown ? shown.bytes : encodeError(WITHHELD));
  }

  #complete(entry: Entry, frame: Buffer): void {
    entry.status = 'done';
    const switchTo = this.state.protocolSwitches.get(entry);
    if (switchTo) {
      // A HELLO the target refused (a bad SETNAME, say) leaves the protocol as it was.
      if (frame[0] !== 0x2d && frame[0] !== 0x21) this.state.protocol = switchTo;
      this.state.protocolSwitches.delete(entry);
    }
    if (this.state.protocolPending && this.state.protocolSwitches.size === 0) {
      this.state.protocolPending = false;
      queueMicrotask(() => this.dispatch.pump());
    }
    const session = entry.session!;
    let reply: MaskedReply;
    try {
      reply = decodeAndMask(frame, entry, this.state.protocol, (profile) => this.state.ports.masking.masker(profile), entry.execAbort ? { type: 'error', value: EXECABORT } : undefined);
    } catch {
      entry.reply = encodeError(WITHHELD);
      session.governor.recordRefused(entry.id, {
        outcome: 'error',
        code: SluiceErrorCode.MaskingUnavailable,
        message: 'result withheld: masking unavailable',
        durationMs: elapsedMs(entry),
      });
      return;
    }
    entry.reply = reply.bytes;
    const errorText = errorTextOf(reply.value);
    const isError = errorText !== undefined;
    this.state.ports.audit.record(session.id, 'command.completed', {
      commandId: entry.id,
      outcome: reply.value.type,
      ok: !isError,
      error: isError ? { code: errorCodeOf(reply.value), message: errorText } : undefined,
      durationMs: elapsedMs(entry),
    });
    if (!isError) recordResult(this.state.ports.audit, this.state.ports.recording, session.id, entry.id, reply);
  }

  /**
   * Takes the frames of a read in order. An agent whose events outrun the bus is no longer read
   * from its target until they are acknowledged (TCP holds the rest back): after the read when
   * they answer its commands (their number is bounded by the commands taken), after each pushed
   * message when they are pushed (one read holds a thousand small ones: those left wait here).
   */
  #take(frames: Buffer[]): boolean {
    for (let index = 0; index < frames.length; index += 1) {
      this.#pushed = false;
      this.#onUpstreamFrame(frames[index]!);
      if (this.state.closed) return true;
      if (this.#pushed && index + 1 < frames.length && this.#holdForBacklog()) {
        this.#held = frames.slice(index + 1);
        return true;
      }
    }
    return this.#holdForBacklog();
  }

  /** True (and the target held) while the agent is past its share of the audit queue. */
  #holdForBacklog(): boolean {
    const session = this.state.session;
    if (!session || !this.state.ports.audit.backlogged?.(session.id, () => this.#resume(), 'target')) return false;
    this.state.holdTarget('audit');
    return true;
  }

  /** The agent's backlog drained: the frames held are taken, then the target is read again. */
  #resume(): void {
    if (this.state.closed) return;
    const held = this.#held;
    this.#held = [];
    if (held.length > 0 && this.#take(held)) return;
    this.state.releaseTarget('audit');
  }

  attachUpstream(upstream: Socket): void {
    upstream.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = this.state.upstreamFramer.push(chunk);
      } catch {
        this.state.close('target sent a malformed reply');
        return;
      }
      // Frames kept back for the agent's backlog go first: what came after them waits behind them.
      if (this.#held.length > 0) this.#held.push(...frames);
      else this.#take(frames);
    });
    upstream.on('drain', () => {
      if (!this.state.clientHeldForAudit) this.state.socket.resume();
    });
    upstream.on('error', () => this.state.close('target error'));
    upstream.on('close', () => this.state.close('target closed the connection'));
  }
}
