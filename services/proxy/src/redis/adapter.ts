import { decodeCommand, encodeCommand, encodeError, encodeSimple, encodeValue, RespFramer } from '@sluice/codec-resp';
import { resourceLimits, type RedisResourceConfig } from '@sluice/config';
import { SluiceErrorCode } from '@sluice/contracts';
import type { GovernancePorts, ProtocolAdapter } from '../ports.js';
import { authToken, parseHello, PRE_AUTH_COMMANDS, refusalOf } from './commands.js';
import { CommandDispatch } from './command-dispatch.js';
import { ConnectionState, MAX_QUEUED, type ClientSocket } from './connection-state.js';
import { elapsedMs } from './entries.js';
import { RedisLogin } from './login.js';
import { UpstreamReplies } from './upstream-replies.js';

export interface RedisAdapterOptions {
  /** Base directory of `{ file: … }` secrets (the config file's directory). */
  readonly secretsDir: string;
  /** Milliseconds to wait for the target's connection and handshake. */
  readonly connectTimeoutMs?: number;
}

const NOAUTH = 'NOAUTH Authentication required.';
const HELLO_NOAUTH =
  'NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time';
/** The first byte of a multibulk command (`*`); anything else is an inline command. */
const RESP_ARRAY = 0x2a;
/** A connection paused for its agent's audit backlog, ended because the bus went away meanwhile. */
const AUDIT_GONE = "ERR audit unavailable: this agent's earlier commands cannot be recorded; connection closed";
/** Bytes an unauthenticated client may buffer: nobody gets to make Sluice hold a 512 MiB bulk before logging in. */
const PRE_AUTH_BUFFER_LIMIT = 64 * 1024;

/**
 * The Redis front door: agents log in with `AUTH <token>` / `HELLO 3 AUTH <user> <token>`,
 * every command is decided before a byte of it goes upstream, replies are masked, and every
 * action is recorded. One upstream connection per agent connection, authenticated with the
 * resource's own credentials, which the agent never sees.
 */
export const createRedisAdapter = (resource: RedisResourceConfig, options: RedisAdapterOptions): ProtocolAdapter => ({
  handleConnection: (socket, ports) =>
    new Promise<void>((resolve) => {
      const connection = new RedisConnection(resource, options, socket, ports, resolve);
      connection.start();
    }),
});

/** One agent connection: its messages read in order, before and after login. */
class RedisConnection {
  readonly #framer = new RespFramer('command');
  /** Frames waiting for the intake loop (it pauses while AUTH is verified). */
  readonly #inbox: Buffer[] = [];
  #intakeBusy = false;
  readonly #state: ConnectionState;
  readonly #dispatch: CommandDispatch;
  readonly #login: RedisLogin;
  readonly #done: () => void;

  constructor(resource: RedisResourceConfig, options: RedisAdapterOptions, socket: ClientSocket, ports: GovernancePorts, done: () => void) {
    this.#state = new ConnectionState(resource, options, socket, ports, (reason) => this.#close(reason));
    this.#dispatch = new CommandDispatch(this.#state);
    this.#login = new RedisLogin(this.#state, this.#dispatch, new UpstreamReplies(this.#state, this.#dispatch));
    this.#done = done;
  }

  start(): void {
    this.#state.socket.setNoDelay?.(true);
    this.#state.socket.on('data', (chunk: Buffer) => this.#onClientData(chunk));
    this.#state.socket.on('error', () => this.#close('client error'));
    this.#state.socket.on('close', () => this.#close('client closed'));
    this.#state.socket.on('end', () => this.#close('client closed'));
  }


  #onClientData(chunk: Buffer): void {
    if (this.#state.closed) return;
    let frames: Buffer[];
    try {
      frames = this.#framer.push(chunk);
      if (!this.#state.session && this.#framer.buffered > PRE_AUTH_BUFFER_LIMIT) throw new Error('unauthenticated client sent too much');
    } catch {
      this.#protocolError();
      return;
    }
    // limits.maxMessageBytes: one command (all its arguments) at most; checked while it still
    // arrives, so a larger one is never buffered whole. Like Redis past proto-max-bulk-len, the
    // connection ends (the rest of the command cannot be told from the next one).
    const limit = resourceLimits(this.#state.resource).maxMessageBytes;
    if (this.#framer.buffered > limit || frames.some((frame) => frame.length > limit)) {
      this.#state.writeClient(encodeError(`ERR Protocol error: command larger than this resource's limit of ${limit} bytes`));
      this.#state.flush();
      this.#close('command too large');
      return;
    }
    for (const frame of frames) this.#inbox.push(frame);
    if (this.#state.pending.length > MAX_QUEUED) this.#state.socket.pause();
    this.#intake();
  }

  /**
   * Every command makes events, refused ones too with nothing asked of the target: an agent past
   * its share of the audit queue has no more of its commands taken, nor its client read (TCP
   * holds the rest), until its events are acknowledged. True while it is held. Should the bus
   * go away meanwhile, the connection is ended (after the replies already due) as audit unavailable.
   */
  #heldForBacklog(): boolean {
    const state = this.#state;
    if (state.clientHeldForAudit) return true;
    if (!state.session) return false;
    const backlogged = state.ports.audit.backlogged?.(state.session.id, (outage) => {
      state.clientHeldForAudit = false;
      if (state.closed) return;
      if (outage) {
        this.#dispatch.pushLocal('', [], encodeError(AUDIT_GONE), 'audit unavailable');
        return;
      }
      if (state.pending.length <= MAX_QUEUED) state.socket.resume();
      this.#intake();
    });
    if (!backlogged) return false;
    state.clientHeldForAudit = true;
    state.socket.pause();
    return true;
  }

  /** A malformed frame closes this connection only; it is audited first. */
  #protocolError(): void {
    if (!this.#state.session) {
      this.#state.ports.audit.record(this.#state.ports.newId(), 'session.rejected', {
        resource: this.#state.resource.name,
        protocol: 'redis',
        client: this.#state.client,
        reason: 'malformed RESP frame',
        code: SluiceErrorCode.ProtocolMalformed,
      });
    }
    this.#state.writeClient(encodeError('ERR Protocol error: malformed request'));
    this.#state.flush();
    this.#close('protocol error: malformed frame');
  }

  /**
   * Takes frames in order, synchronously: a read batch of commands decided from the cache is
   * dispatched in this callback, so it goes upstream in one write. Only authentication makes it
   * wait (later commands need the new subject); it resumes when the login settles.
   */
  #intake(): void {
    if (this.#intakeBusy) return;
    this.#intakeBusy = true;
    let login: Promise<void> | undefined;
    this.#dispatch.beginBurst();
    try {
      while (!login && this.#inbox.length > 0 && !this.#state.closed && !this.#heldForBacklog()) {
        const frame = this.#inbox.shift()!;
        let args: Buffer[];
        try {
          args = decodeCommand(frame);
        } catch {
          this.#protocolError();
          return;
        }
        if (args.length === 0) continue;
        const name = args[0]!.toString('latin1').toUpperCase();
        // An inline command goes upstream re-encoded from the arguments it was decided on,
        // never as the raw line, so the target cannot read it any other way.
        login = this.#state.session ? this.#afterLogin(name, args, frame[0] === RESP_ARRAY ? frame : encodeCommand(args)) : this.#beforeLogin(name, args);
      }
    } finally {
      this.#dispatch.endBurst();
      // Frames that come meanwhile wait in the inbox: the intake stays busy until the login settles.
      if (login) {
        void login.finally(() => {
          this.#intakeBusy = false;
          this.#intake();
        });
      } else this.#intakeBusy = false;
    }
  }

  /** Before login only AUTH and HELLO … AUTH make the intake wait (a promise); the rest is answered at once. */
  #beforeLogin(name: string, args: Buffer[]): Promise<void> | undefined {
    if (!PRE_AUTH_COMMANDS.has(name)) return void this.#state.writeClient(encodeError(NOAUTH));
    switch (name) {
      case 'PING':
        return void this.#state.writeClient(args.length > 1 ? encodeValue({ type: 'bulk', value: args[1]! }) : encodeSimple('PONG'));
      case 'QUIT':
        this.#state.writeClient(encodeSimple('OK'));
        this.#state.flush();
        return void this.#close('client quit');
      case 'AUTH': {
        const token = authToken(args);
        if (token === undefined) return void this.#state.writeClient(encodeError("ERR wrong number of arguments for 'auth' command"));
        return this.#login.login(token, undefined);
      }
      default: {
        const hello = parseHello(args);
        if ('error' in hello) return void this.#state.writeClient(encodeError(hello.error));
        if (!hello.auth) return void this.#state.writeClient(encodeError(HELLO_NOAUTH));
        return this.#login.login(hello.auth.password, hello);
      }
    }
  }

  #afterLogin(name: string, args: Buffer[], frame: Buffer): Promise<void> | undefined {
    switch (name) {
      case 'AUTH': {
        const token = authToken(args);
        if (token === undefined) return void this.#dispatch.pushLocal(name, args, encodeError("ERR wrong number of arguments for 'auth' command"));
        return this.#login.reauthenticate(token, undefined);
      }
      case 'HELLO': {
        const hello = parseHello(args);
        if ('error' in hello) return void this.#dispatch.pushLocal(name, args, encodeError(hello.error));
        if (hello.auth) return this.#login.reauthenticate(hello.auth.password, hello);
        return void this.#dispatch.pushHello(hello);
      }
      case 'QUIT': {
        return void this.#dispatch.pushLocal(name, args, encodeSimple('OK'), 'client quit');
      }
      default: {
        const refusal = refusalOf(name, args);
        if (refusal) {
          this.#state.markDirty();
          const entry = this.#dispatch.pushLocal(name, args, encodeError(`NOPERM ${refusal}`));
          // Refused whatever the policy says, and recorded like a denial: attempts leave a trace.
          this.#dispatch.recordRefusal(entry, refusal);
          return undefined;
        }
        this.#dispatch.pushCommand(name, args, frame);
        return undefined;
      }
    }
  }

  /**
   * Commands sent to the target and not answered when the connection ends (the agent hung up on
   * a blocking read, the target went away): each gets its completion, so no decided command is
   * left without an outcome in the record. The target may well have run it.
   */
  #recordUnanswered(reason: string): void {
    for (const entry of this.#state.inflight) {
      if (entry.status !== 'sent' || !entry.session) continue;
      this.#state.ports.audit.record(entry.session.id, 'command.completed', {
        commandId: entry.id,
        outcome: 'error',
        ok: false,
        error: { code: SluiceErrorCode.ConnectionClosed, message: `the session ended (${reason}) before the target answered: the command may have run` },
        durationMs: elapsedMs(entry),
      });
    }
  }

  #close(reason: string): void {
    if (this.#state.closed) return;
    this.#state.closed = true;
    this.#state.wakeAnswered();
    this.#login.releaseSubject?.();
    this.#state.holdAbort.abort();
    this.#recordUnanswered(reason);
    this.#login.endSession(reason);
    this.#state.upstream?.destroy();
    // Let buffered replies (e.g. QUIT's +OK, a protocol error) reach the client first.
    if (this.#state.out.clientPending && !this.#state.socket.destroyed) this.#state.flush();
    this.#state.socket.end();
    setTimeout(() => this.#state.socket.destroy(), 1_000).unref();
    this.#done();
  }
}
