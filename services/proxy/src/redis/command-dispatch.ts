import { encodeCommand, encodeError } from '@sluice/codec-resp';
import { maskProfileOf, SluiceErrorCode, type ApproveDecision, type Decision, type DenyDecision } from '@sluice/contracts';
import { commandHash } from '../governance/approval-hold.js';
import type { RecordedCommand, Verdict } from '../governance/governor.js';
import { describeCommand, UNMASKABLE_REPLIES, type HelloArgs } from './commands.js';
import type { ConnectionState } from './connection-state.js';
import { elapsedMs, newEntry, type Entry, type SessionState } from './entries.js';

/**
 * Redis commands through the governance core, in arrival order: each decided (cached verdicts
 * at once), recorded, held for approval or refused, and only then written upstream. Nothing is
 * dispatched past a command still held or a protocol switch not yet answered.
 */
export class CommandDispatch {
  /**
   * Within one read's burst (see beginBurst), the previous command's cached verdict and recorded
   * text: a pipelining client sends the same command many times in a row, and looking it up and
   * masking its text again would give the same answer, as nothing can change between commands
   * taken in one synchronous pass.
   */
  #burst: { verdict?: { readonly session: SessionState; readonly args: readonly Buffer[]; readonly verdict: Verdict }; recorded?: { readonly text: string; readonly decision: Decision; readonly masked: string } } | undefined;

  constructor(
    private readonly state: ConnectionState,
  ) {}

  /** The intake starts taking a read's commands in one synchronous pass. */
  beginBurst(): void {
    this.#burst = {};
  }

  /** The pass is over: later dispatches (after a decision came, a hold, a login) look up afresh. */
  endBurst(): void {
    this.#burst = undefined;
  }

  /**
   * HELLO without AUTH after login: decided and recorded like any command (SETNAME changes the
   * connection's name on the target), then answered by the target, which switches protocol.
   */
  pushHello(hello: HelloArgs): void {
    const args = ['HELLO', ...(hello.protocol ? [String(hello.protocol)] : []), ...(hello.setName ? ['SETNAME', hello.setName] : [])].map((arg) => Buffer.from(arg));
    const entry = this.pushCommand('HELLO', args, encodeCommand(args));
    // The protocol changes with the reply to this HELLO; replies before it keep the old one.
    if (hello.protocol) this.state.protocolSwitches.set(entry, hello.protocol);
  }

  /** An answer of Sluice's own, kept in order with the replies before it. */
  pushLocal(name: string, args: readonly Buffer[], reply: Buffer, closeAfter?: string): Entry {
    const entry = newEntry(this.state.ports.newId(), this.state.session, name, args, reply, 'local');
    entry.closeAfter = closeAfter;
    entry.settled = true;
    entry.status = 'done';
    entry.reply = reply;
    this.state.enqueue(entry);
    this.pump();
    return entry;
  }

  pushCommand(name: string, args: Buffer[], frame: Buffer): Entry {
    const entry = newEntry(this.state.ports.newId(), this.state.session, name, args, frame, 'command');
    this.state.enqueue(entry);
    const session = this.state.session!;
    session.commands++;
    const command = { kind: 'redis', args } as const;
    const cached = this.#sameAsPrevious(session, args) ?? session.governor.cachedVerdict(command);
    if (cached) {
      if (this.#burst) this.#burst.verdict = { session, args, verdict: cached };
      entry.verdict = cached;
      entry.settled = true;
      this.pump();
      return entry;
    }
    void session.governor.decide(command).then((verdict) => {
      entry.verdict = verdict;
      entry.settled = true;
      this.pump();
    });
    return entry;
  }


  /** The verdict of the burst's previous command when this one is the same, by the same session. */
  #sameAsPrevious(session: SessionState, args: readonly Buffer[]): Verdict | undefined {
    const previous = this.#burst?.verdict;
    if (!previous || previous.session !== session || previous.args.length !== args.length) return undefined;
    for (let index = 0; index < args.length; index += 1) if (!args[index]!.equals(previous.args[index]!)) return undefined;
    return previous.verdict;
  }

  pump(): void {
    while (!this.state.closed && !this.state.holding && !this.state.protocolPending && this.state.toDispatch.length > 0) {
      const entry = this.state.toDispatch[0]!;
      if (!entry.settled) break;
      this.state.takeNext();
      if (entry.kind === 'local') continue;
      this.#dispatch(entry);
    }
    this.state.emit();
  }

  #dispatch(entry: Entry): void {
    const session = entry.session!;
    if (!this.state.ports.audit.healthy) return this.#answer(entry, encodeError('ERR audit unavailable'), SluiceErrorCode.AuditUnavailable);
    const verdict = entry.verdict!;
    const recorded = this.#recorded(entry, session, verdict);
    if (verdict.unavailable) {
      session.governor.recordDecided(recorded, verdict.decision);
      this.state.markDirty();
      return this.#answer(entry, encodeError('NOPERM policy unavailable'), SluiceErrorCode.PolicyUnavailable);
    }
    let decision = verdict.decision;
    const unmaskable = UNMASKABLE_REPLIES.get(entry.name);
    const profile = maskProfileOf(decision);
    if (unmaskable && profile !== undefined) {
      const { rule, action, risk, tables, prepares } = decision;
      decision = { rule, action, risk, tables, prepares, effect: 'deny', reason: `${entry.name} ${unmaskable}, which masking profile '${profile}' cannot cover` } satisfies DenyDecision;
    }
    session.governor.recordDecided(recorded, decision);
    switch (decision.effect) {
      case 'deny': {
        this.state.markDirty();
        const why = decision.rule ? `denied by rule '${decision.rule}'` : 'denied: no rule allows it (default deny)';
        return this.#answer(entry, encodeError(`NOPERM ${why}${decision.reason ? `: ${decision.reason}` : ''}`), SluiceErrorCode.PolicyDenied);
      }
      case 'approve':
        this.state.justification.note(session, entry.args);
        return this.#hold(entry, decision, session, recorded.command);
      case 'allow':
        this.state.justification.note(session, entry.args);
        if (this.state.resource.audit?.wait === 'ack') return this.#afterAcknowledged(entry, session, decision.maskProfile);
        return this.#send(entry, decision.maskProfile);
    }
  }

  /** The command as recorded: masked (its name only if masking fails), cut to its first bytes. */
  #recorded(entry: Entry, session: SessionState, verdict: Verdict | undefined): RecordedCommand {
    const described = describeCommand(entry.args);
    const decision = verdict?.unavailable === false ? verdict.decision : undefined;
    const previous = this.#burst?.recorded;
    // The same text under the same decision (its profile) masks the same way within a burst.
    let masked: string;
    if (previous && decision && previous.decision === decision && previous.text === described.text) masked = previous.masked;
    else {
      masked = session.governor.maskedCommand(described.text, decision, entry.name);
      if (this.#burst && decision) this.#burst.recorded = { text: described.text, decision, masked };
    }
    return {
      commandId: entry.id,
      command: masked,
      ...(described.truncated ? { commandBytes: described.bytes } : {}),
    };
  }

  /** `audit.wait: ack`: the command goes to the target only once the bus has its record; later ones wait behind it. */
  #afterAcknowledged(entry: Entry, session: SessionState, maskProfile: string | undefined): void {
    this.state.holding = true;
    void session.governor.acknowledged().then((acknowledged) => {
      this.state.holding = false;
      if (this.state.closed) return;
      if (acknowledged) this.#send(entry, maskProfile);
      else {
        this.state.markDirty();
        this.#answer(entry, encodeError('ERR audit unavailable'), SluiceErrorCode.AuditUnavailable);
      }
      this.pump();
    });
  }

  recordRefusal(entry: Entry, reason: string): void {
    const session = entry.session;
    if (!session) return;
    session.commands++;
    session.governor.recordRefusedBeforeRule(this.#recorded(entry, session, undefined), reason);
    session.governor.recordRefused(entry.id, { outcome: 'error', code: SluiceErrorCode.PolicyDenied, message: `NOPERM ${reason}`, durationMs: elapsedMs(entry) });
  }

  #hold(entry: Entry, decision: ApproveDecision, session: SessionState, text: string): void {
    this.state.holding = true;
    const hash = commandHash([this.state.resource.name, session.subject.sub, entry.args.map((arg) => arg.toString('utf8'))]);
    void session.governor.hold({ commandId: entry.id, command: text, commandHash: hash, decision, justification: this.state.justification.take(session) }, this.state.holdAbort.signal).then((result) => {
      this.state.holding = false;
      if (this.state.closed) return;
      // Under audit.wait: ack a granted command waits for its record like an allowed one (PostgreSQL does too).
      if (result.granted) {
        if (this.state.resource.audit?.wait === 'ack') this.#afterAcknowledged(entry, session, decision.maskProfile);
        else this.#send(entry, decision.maskProfile);
      } else {
        this.state.markDirty();
        const id = result.approvalId ?? '-';
        this.#answer(entry, encodeError(`NOPERM approval ${id} ${result.outcome}: ${result.reason || 'no reason given'}`), result.code);
      }
      this.pump();
    });
  }

  /** Answers a command without the target; records its completion. */
  #answer(entry: Entry, reply: Buffer, code: string): void {
    // A HELLO answered here never switches the protocol.
    this.state.protocolSwitches.delete(entry);
    entry.status = 'done';
    entry.reply = reply;
    entry.session?.governor.recordRefused(entry.id, { outcome: 'error', code, message: reply.toString('utf8', 1, reply.length - 2), durationMs: elapsedMs(entry) });
  }

  #send(entry: Entry, maskProfile: string | undefined): void {
    const refusal = this.state.stream.refusal(entry.name, entry.args, this.state.protocol);
    if (refusal) {
      // Inside MULTI, Redis aborts EXEC after a command it refused to queue: so does Sluice.
      this.state.markDirty();
      return this.#answer(entry, encodeError(refusal), SluiceErrorCode.PolicyDenied);
    }
    const unsubscribed = this.state.stream.unsubscribedReplies(entry.name, entry.args, this.state.protocol);
    if (unsubscribed) {
      entry.status = 'done';
      entry.reply = unsubscribed;
      this.recordStreamed(entry, 'array');
      return;
    }
    const dispatch = this.state.stream.dispatch(entry.name, entry.args, maskProfile, this.state.protocol);
    entry.queued = dispatch.queued;
    if (dispatch.execQueue) entry.txQueued = [...dispatch.execQueue];
    entry.execAbort = dispatch.execAbort;
    entry.maskProfile = maskProfile;
    this.state.writeUpstream(dispatch.execAbort ? encodeCommand(['DISCARD']) : entry.frame);
    if (dispatch.expectsReply) {
      entry.status = 'sent';
      entry.confirmations = dispatch.confirmations;
      this.state.inflight.push(entry);
      // Until HELLO's reply, the protocol of later replies is unknown: nothing more is sent.
      if (this.state.protocolSwitches.has(entry)) this.state.protocolPending = true;
      return;
    }
    entry.status = 'done';
    entry.reply = Buffer.alloc(0);
    this.recordStreamed(entry, 'stream');
  }

  recordStreamed(entry: Entry, outcome: string): void {
    if (!entry.session) return;
    this.state.ports.audit.record(entry.session.id, 'command.completed', { commandId: entry.id, outcome, ok: true, durationMs: elapsedMs(entry) });
  }
}
