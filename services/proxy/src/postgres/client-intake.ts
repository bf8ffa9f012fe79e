import { decodeFrontend, FrontendCode, TransactionStatus, encodeQuery, MessageTooLongError, type Frame, type FrontendMessage } from '@sluice/codec-pg';
import { ConnectionClosedError, ProtocolMalformedError, withholdsServerTexts } from '@sluice/contracts';
import type { Decision } from '../ports.js';
import { EncodingConversionError } from './client-encoding.js';
import type { ClientEdge } from './client-encoding-frames.js';
import type { EncodingPlan } from './client-encoding-session.js';
import { newPipeline, type Refusal } from './expectations.js';
import type { ExtendedBatch } from './extended-batch.js';
import { CANCELLED, denial } from './refusals.js';
import type { SessionCore } from './session-core.js';
import type { SessionDecisions } from './session-decisions.js';
import { SqlState } from './sqlstate.js';

/** A simple Query on its way: decided, maybe held, then forwarded or refused. */
interface DecidedQuery {
  readonly frame: Frame;
  readonly commandId: string;
  readonly text: string;
  /** A SET/RESET of client_encoding, carried out by the proxy. */
  readonly encodingPlan: EncodingPlan | undefined;
  /** Decided on these schemas, not the session's path (see SessionDecisions.decideOnUnknownPath). */
  readonly unknownPath?: readonly string[] | undefined;
}

/**
 * The agent's messages, client -> target: read in order, one at a time (a message waits while
 * the one before it is decided or held), the socket paused while the queue is long. A simple
 * Query is decided and sent here; the extended protocol's messages go to the ExtendedBatch.
 * @see https://www.postgresql.org/docs/current/protocol-flow.html
 */
export class ClientIntake {
  readonly #queue: Frame[] = [];
  #queueHead = 0;
  #pumping = false;
  /** The running pump (it never rejects), while #pumping. */
  #pumped: Promise<void> = Promise.resolve();

  constructor(
    private readonly session: SessionCore,
    private readonly decisions: SessionDecisions,
    private readonly batch: ExtendedBatch,
  ) {}

  readonly onClientData = (chunk: Buffer): void => {
    if (this.session.closed) return;
    let frames: Frame[];
    try {
      frames = this.session.clientReader!.push(chunk);
    } catch (error) {
      this.clientReadFailed(error as Error);
      return;
    }
    if (frames.length > 0) this.enqueue(frames);
  };

  clientReadFailed(error: Error): void {
    // Refused before a byte of it is buffered; the rest of it cannot be skipped safely.
    if (error instanceof MessageTooLongError) {
      this.session.close('message_too_long', { code: SqlState.ProgramLimitExceeded, message: `message of ${error.length} bytes exceeds this resource's limit of ${error.limit} bytes` });
    } else if (error instanceof ConnectionClosedError) this.session.close('client_closed');
    else this.#malformed();
  }

  #malformed(): void {
    this.session.close('protocol_malformed', { code: SqlState.ProtocolViolation, message: 'invalid frontend message' });
  }

  enqueue(frames: Frame[]): void {
    for (const frame of frames) {
      this.#queue.push(frame);
      this.session.queuedBytes += frame.raw.length;
    }
    this.session.updateClientFlow();
    if (!this.#pumping) this.#pumped = this.#pump();
  }

  /**
   * A CancelRequest for this session: the target's to apply while it has a message of the agent's
   * to run. Otherwise the agent's statement is still with the proxy (being decided, or waiting
   * for the proxy's own search_path read), where the server would already be running it: the
   * proxy answers it as cancelled. With nothing of the agent's anywhere, the server would ignore
   * the request; so does the proxy (its own read must not be the one cancelled).
   */
  cancelRequested(): boolean {
    if (this.session.expects.some((expect) => expect.kind !== 'internal')) return false;
    if (this.#pumping) {
      this.session.cancelHeld = true;
      // A statement held for a human is the one the agent cancels: it no longer waits.
      for (const hold of this.session.holds) hold.abort();
    }
    return true;
  }

  /**
   * Whether messages taken from the agent are still being decided: their records (a refusal, a
   * decision) are still to come, even once the session has closed.
   */
  get busy(): boolean {
    return this.#pumping;
  }

  /** Resolves once the messages taken so far are decided and recorded (the pump has stopped). */
  idle(): Promise<void> {
    return this.#pumping ? this.#pumped : Promise.resolve();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (!this.session.closed) {
        if (this.#queueHead >= this.#queue.length) {
          if (!this.batch.pending) break;
          // Everything the client has sent so far is decided and forwarded without waiting for its
          // Sync: a client that pipelines and then waits gets its answers (and errors) as direct.
          this.#queue.length = 0;
          this.#queueHead = 0;
          await this.batch.process('implicit');
          this.session.flushUpstream();
          continue;
        }
        // Refused statements make events too: an agent past its share of the audit queue waits here.
        this.session.pauseWhileBacklogged(false);
        if (this.session.auditBlocked) {
          this.session.flushUpstream();
          await this.session.backlogDrained();
          continue;
        }
        const frame = this.#queue[this.#queueHead]!;
        this.#queue[this.#queueHead++] = undefined as unknown as Frame;
        this.session.queuedBytes -= frame.raw.length;
        const edge = this.session.toClient.edge;
        const pending = edge ? this.#handleInClientEncoding(edge, frame) : this.#handleClientFrame(frame);
        if (pending) {
          this.session.flushUpstream();
          await pending;
        }
      }
      this.#queue.length = 0;
      this.#queueHead = 0;
      this.session.flushUpstream();
      this.session.updateClientFlow();
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_PROTOCOL_MALFORMED') this.#malformed();
      else this.session.close('proxy_error', { code: SqlState.SystemError, message: 'internal proxy error' });
    } finally {
      this.#pumping = false;
    }
  }

  /** Returns a promise only when the frame needs an asynchronous step (a decision, an approval). */
  #handleClientFrame(frame: Frame): Promise<void> | undefined {
    switch (frame.code) {
      case FrontendCode.Query:
        if (this.batch.pending) return this.batch.process('implicit').then(() => this.#query(frame));
        return this.#query(frame);
      case FrontendCode.Parse:
      case FrontendCode.Bind:
      case FrontendCode.Describe:
      case FrontendCode.Execute:
      case FrontendCode.Close:
        if (this.batch.add(frame)) return this.batch.process('implicit');
        return undefined;
      case FrontendCode.Sync:
      case FrontendCode.Flush:
        this.batch.add(frame);
        if (frame.code === FrontendCode.Flush) return this.batch.process('flush');
        // A Sync ends the pipeline: from here a name means what the server answered for it.
        return this.batch.process('sync').then(() => void (this.session.pipeline = newPipeline()));
      case FrontendCode.CopyData:
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        // COPY FROM STDIN data of a statement already decided; the server ignores it otherwise.
        if (frame.code !== FrontendCode.CopyData) this.session.copyEndsSent++;
        this.session.toUpstream.push(frame.raw);
        return undefined;
      case FrontendCode.Terminate:
        this.session.toUpstream.push(frame.raw);
        this.session.flushUpstream();
        this.session.close('client_terminated');
        return undefined;
      case FrontendCode.FunctionCall:
        this.session.refuseOnTarget({ code: SqlState.InsufficientPrivilege, message: 'permission denied: the fast-path function call interface is not allowed' }, true);
        return undefined;
      default:
        // A password message now, or an unknown code: not a well-formed session.
        decodeFrontend(frame);
        throw new ProtocolMalformedError('unexpected frontend message');
    }
  }

  /**
   * A message of an agent whose client encoding is not UTF8: decoded into UTF-8 with the encoding
   * in force now (after every earlier message, a SET client_encoding included), then handled as
   * any. Bytes not valid in that encoding are answered as the server would (22021), never passed on.
   */
  #handleInClientEncoding(edge: ClientEdge, frame: Frame): Promise<void> | undefined {
    let converted: Frame | undefined;
    try {
      converted = edge.fromClient(frame);
    } catch (error) {
      if (!(error instanceof EncodingConversionError)) throw error;
      const refusal = { code: error.sqlstate, message: error.message };
      // On the record as a command refused before any rule: its text cannot be read to be recorded.
      const commandId = this.session.ports.newId();
      this.session.commands++;
      this.decisions.governor().recordRefusedBeforeRule({ commandId, command: `[not valid in client_encoding ${edge.encoding.name}]` }, error.message);
      this.decisions.recordRefused(commandId, refusal);
      // A simple query's error ends with ReadyForQuery; an extended-protocol one skips to the Sync.
      const simple = frame.code === FrontendCode.Query;
      const refuse = (): void => {
        if (this.session.discardUntilSync) return;
        this.session.refuseOnTarget(refusal, simple);
        if (!simple) this.session.discardUntilSync = true;
      };
      return this.batch.pending ? this.batch.process('implicit').then(refuse) : void refuse();
    }
    return converted ? this.#handleClientFrame(converted) : undefined;
  }

  /**
   * A simple Query: the whole text is one command, decided before a byte goes upstream. A promise
   * only when something must be waited for (a decision not cached, an approval, an audit ack):
   * otherwise it is forwarded in the turn its bytes arrived.
   */
  #query(frame: Frame): Promise<void> | undefined {
    // The target skips to the pipeline's Sync since an error: it ignores this query, so does the proxy.
    if (this.session.discardUntilSync) return undefined;
    const message = decodeFrontend(frame) as Extract<FrontendMessage, { type: 'Query' }>;
    const text = message.text;
    // SET/RESET client_encoding: the proxy's own to carry out (the target stays in UTF8). Decided
    // on the transaction status the commands before it leave (a pipelined BEGIN not yet answered
    // would let it through, and the ROLLBACK that undoes it on the server would not undo it here).
    const touchesEncoding = this.session.effectsOf(text).clientEncoding;
    if (touchesEncoding && this.session.expects.length > 0 && !this.session.closed) return this.session.settled().then(() => this.#query(frame));
    const encodingPlan = touchesEncoding ? this.session.clientEncoding?.plan(text, this.session.transactionStatus !== TransactionStatus.Idle) : undefined;
    if (encodingPlan && 'code' in encodingPlan) {
      this.session.refuseOnTarget(this.decisions.recordRefusedBeforeRule(text, encodingPlan), true);
      return undefined;
    }
    const commandId = this.session.ports.newId();
    const auditRefusal = this.decisions.auditRefusal();
    if (auditRefusal) {
      this.session.refuseOnTarget(auditRefusal, true);
      return undefined;
    }
    const tooLong = this.decisions.statementTooLong(commandId, text);
    if (tooLong) {
      this.session.refuseOnTarget(tooLong, true);
      return undefined;
    }
    // Between batches a simple query may read an unknown search_path first.
    if (!this.session.searchPath && !this.session.searchPathRefresh) this.session.refreshSearchPath();
    const query: DecidedQuery = { frame, commandId, text, encodingPlan };
    // A query sent after an Execute that ran code unseen, before any Sync: the path that code may
    // have set is read only at the Sync, so the query is decided as if the path were unknown.
    if (this.session.searchPathDue) {
      return this.decisions
        .decideOnUnknownPath(text)
        .then(({ decision, searchPath }) => this.#decidedQuery({ ...query, unknownPath: searchPath ?? this.session.searchPath ?? [] }, decision));
    }
    const decided = this.decisions.decideNow(text);
    if (decided) return this.#decidedQuery(query, decided);
    return this.decisions.decide(text).then((decision) => this.#decidedQuery(query, decision));
  }

  #decidedQuery(query: DecidedQuery, decision: Decision): Promise<void> | undefined {
    if (this.session.closed) return undefined;
    const { commandId, text } = query;
    this.decisions.recordDecided(commandId, text, decision);
    if (decision.effect === 'approve') return this.decisions.approve(commandId, text, [], decision).then((refusal) => this.#sendQuery(query, decision, refusal));
    return this.#sendQuery(query, decision, decision.effect === 'deny' ? denial(decision, text, this.session.resource.name) : undefined);
  }

  /** `acked`: the bus has acknowledged its record (or the resource does not wait for that). */
  #sendQuery(query: DecidedQuery, decision: Decision, refusal: Refusal | undefined, acked = false): Promise<void> | undefined {
    if (this.session.closed) return undefined;
    const { frame, commandId, text, encodingPlan } = query;
    if (this.session.cancelHeld && (!refusal || decision.effect === 'approve')) refusal = CANCELLED;
    this.session.cancelHeld = false;
    const masking = refusal ? undefined : this.decisions.maskerFor(decision, text, query.unknownPath);
    if (masking && 'code' in masking) refusal = masking;
    if (!refusal && !acked && this.session.resource.audit?.wait === 'ack') {
      return this.decisions.unacknowledged().then((unacked) => this.#sendQuery(query, decision, unacked, true));
    }
    if (this.session.discardUntilSync) {
      // An earlier message of the pipeline failed on the target meanwhile: it ignores this query.
      this.decisions.recordRefused(commandId, { code: SqlState.ProtocolViolation, message: 'not run: the target ignores every message up to the Sync of a pipeline that failed' });
      return undefined;
    }
    if (refusal || !masking || 'code' in masking) {
      refusal ??= { code: SqlState.SystemError, message: 'command refused' };
      this.decisions.recordRefused(commandId, refusal);
      this.session.refuseOnTarget(refusal, true);
      return undefined;
    }
    this.session.expects.push({ kind: 'query', command: this.session.newCommand(commandId, masking.masker, text, { encoding: encodingPlan?.switchTo, withholdsServerTexts: withholdsServerTexts(decision), ...(query.unknownPath ? { searchPath: query.unknownPath } : {}) }), result: undefined, copy: undefined });
    this.session.toUpstream.push(encodingPlan?.upstreamText !== undefined ? encodeQuery(encodingPlan.upstreamText) : frame.raw);
    // A simple query ends with ReadyForQuery, which carries any setting an earlier Execute changed.
    this.session.executedSinceSync = false;
    // The path the text was decided under is the one it runs under: a built-in call without
    // arguments (`count(*)`, `now()`) then cannot change it, and costs no re-read.
    const effects = this.session.effectsOf(text, this.session.searchPath);
    if (effects.searchPath || this.session.runsHiddenCode(text, decision)) {
      // A COPY FROM STDIN leaves the target reading copy data: the path is read before the next
      // decision instead (unknown until then), by when the COPY has ended.
      if (effects.copiesFromClient) this.session.searchPath = undefined;
      else this.session.refreshSearchPath();
    }
    // The agent's next message is read in the encoding this one leaves in force.
    return encodingPlan ? this.session.settled() : undefined;
  }
}
