import net from 'node:net';
import tls from 'node:tls';
import {
  decodeBackend,
  decodeNoticeFields,
  encodePasswordMessage,
  encodeQuery,
  encodeSASLInitialResponse,
  encodeSASLResponse,
  encodeSSLRequest,
  encodeStartupMessage,
  FrameReader,
  type Frame,
} from '@sluice/codec-pg';
import { UpstreamFailedError } from '@sluice/contracts';
import { SocketFrames } from './frame-source.js';
import { md5PasswordAnswer, ScramClient } from './scram.js';

/** The target refused or failed; `detail` is for the log and audit, never for the agent. */
export class UpstreamError extends UpstreamFailedError {
  constructor(
    readonly detail: string,
    readonly sqlstate?: string,
    options?: ErrorOptions,
    /** The target's own ErrorResponse message when it refused the session. */
    readonly serverMessage?: string,
  ) {
    super(detail, options);
  }
}

export interface UpstreamOptions {
  readonly host: string;
  readonly port: number;
  readonly ssl: boolean;
  readonly user: string;
  readonly password: string | undefined;
  readonly database: string;
  /** Startup parameters besides user and database (GUCs, options); bytes go unconverted. */
  readonly parameters: ReadonlyArray<readonly [string, string | Buffer]>;
  readonly timeoutMs: number;
  /** A query run once the session is ready (simple protocol); its rows come back as `initialRows`. */
  readonly initialQuery?: string;
}

export interface UpstreamConnection {
  readonly socket: net.Socket;
  /** Holds any partial frame read after ReadyForQuery. */
  readonly reader: FrameReader;
  /** Whole frames read after ReadyForQuery (rare: e.g. an early NoticeResponse). */
  readonly pending: Frame[];
  /** Raw ParameterStatus messages, to relay to the client. */
  readonly parameterStatus: Buffer[];
  readonly processId: number;
  readonly secretKey: number;
  readonly transactionStatus: number;
  /** Rows of `initialQuery` as text (null for SQL NULL). */
  readonly initialRows: (string | null)[][];
}

const connectSocket = (host: string, port: number, timeoutMs: number): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new UpstreamError(`connecting to ${host}:${port} timed out`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(new UpstreamError(`connecting to ${host}:${port}: ${error.message}`, undefined, { cause: error }));
    });
  });

/** Asks the target for TLS (SSLRequest); it answers one byte, 'S' or 'N'. */
const upgradeToTls = (socket: net.Socket, host: string): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    socket.once('data', (answer: Buffer) => {
      if (answer.length !== 1 || answer[0] !== 0x53) {
        socket.destroy();
        reject(new UpstreamError('the target does not accept TLS'));
        return;
      }
      const secure = tls.connect({ socket, servername: net.isIP(host) ? undefined : host });
      secure.once('secureConnect', () => resolve(secure));
      secure.once('error', (error: Error) => reject(new UpstreamError(`TLS to the target: ${error.message}`, undefined, { cause: error })));
    });
    socket.once('error', (error) => reject(new UpstreamError(error.message, undefined, { cause: error })));
    socket.write(encodeSSLRequest());
  });

/**
 * Opens an authenticated session on the target with the resource's own credentials: trust,
 * cleartext, md5 or SCRAM-SHA-256. Resolves at the first ReadyForQuery.
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
export const connectUpstream = async (options: UpstreamOptions): Promise<UpstreamConnection> => {
  let socket = await connectSocket(options.host, options.port, options.timeoutMs);
  socket.setNoDelay(true);
  const timer = setTimeout(() => socket.destroy(new UpstreamError('target startup timed out')), options.timeoutMs);
  try {
    if (options.ssl) {
      socket = await upgradeToTls(socket, options.host);
      socket.setNoDelay(true);
    }
    const frames = new SocketFrames(socket, new FrameReader({ phase: 'typed' }));
    socket.write(
      encodeStartupMessage([['user', options.user], ['database', options.database], ...options.parameters]),
    );
    const parameterStatus: Buffer[] = [];
    let processId = 0;
    let secretKey = 0;
    let scram: ScramClient | undefined;
    const password = (): string => {
      if (options.password === undefined) throw new UpstreamError('the target asks for a password and none is configured');
      return options.password;
    };
    while (true) {
      const frame = await frames.next();
      if (frame.code === 0x45) {
        const fields = decodeNoticeFields(frame.body);
        throw new UpstreamError(`target refused the session: ${fields.C ?? ''} ${fields.M ?? ''}`, fields.C, undefined, fields.M);
      }
      const message = decodeBackend(frame);
      switch (message.type) {
        case 'AuthenticationOk':
          break;
        case 'AuthenticationCleartextPassword':
          socket.write(encodePasswordMessage(password()));
          break;
        case 'AuthenticationMD5Password':
          socket.write(encodePasswordMessage(md5PasswordAnswer(options.user, password(), message.salt)));
          break;
        case 'AuthenticationSASL':
          if (!message.mechanisms.includes(ScramClient.mechanism)) {
            throw new UpstreamError(`no supported SASL mechanism among ${message.mechanisms.join(', ')}`);
          }
          scram = new ScramClient(password());
          socket.write(encodeSASLInitialResponse(ScramClient.mechanism, Buffer.from(scram.clientFirst())));
          break;
        case 'AuthenticationSASLContinue':
          if (!scram) throw new UpstreamError('SASLContinue before SASL');
          socket.write(encodeSASLResponse(Buffer.from(await scram.clientFinal(message.data.toString('utf8')))));
          break;
        case 'AuthenticationSASLFinal':
          if (!scram) throw new UpstreamError('SASLFinal before SASL');
          scram.verifyServerFinal(message.data.toString('utf8'));
          break;
        case 'AuthenticationOther':
          throw new UpstreamError(`unsupported authentication method ${message.code}`);
        case 'ParameterStatus':
          parameterStatus.push(Buffer.from(frame.raw));
          break;
        case 'BackendKeyData':
          processId = message.processId;
          secretKey = message.secretKey;
          break;
        case 'NoticeResponse':
        case 'NegotiateProtocolVersion':
          break;
        case 'ReadyForQuery': {
          const initialRows = options.initialQuery === undefined ? [] : await runInitialQuery(frames, options.initialQuery);
          const pending = frames.detach();
          return { socket, reader: frames.reader, pending, parameterStatus, processId, secretKey, transactionStatus: message.status, initialRows };
        }
        default:
          throw new UpstreamError(`unexpected ${message.type} during startup`);
      }
    }
  } catch (error) {
    socket.destroy();
    if (error instanceof UpstreamError) throw error;
    throw new UpstreamError(`target startup failed: ${(error as Error).message}`, undefined, { cause: error });
  } finally {
    clearTimeout(timer);
  }
};

/**
 * How often the initial query is sent when the target cancels it (57014). A statement_timeout the
 * client set at startup (node-postgres's suite asks for 1 ms) times even the query's first
 * statement, the SET that lifts it, and a busy machine does not always run that within 1 ms.
 * Nothing of the query took effect when it was cancelled, so it is simply sent again.
 */
const INITIAL_QUERY_ATTEMPTS = 5;
const QUERY_CANCELED = '57014';

const runInitialQuery = async (frames: SocketFrames, text: string): Promise<(string | null)[][]> => {
  for (let attempt = 1; ; attempt += 1) {
    const answer = await runQuery(frames, text);
    if (answer.error === undefined) return answer.rows;
    if (answer.error.code !== QUERY_CANCELED || attempt === INITIAL_QUERY_ATTEMPTS) {
      throw new UpstreamError(`query on the target failed: ${answer.error.code} ${answer.error.message}`);
    }
  }
};

/** Runs one simple query on a connection still in its startup exchange; rows as text. */
const runQuery = async (frames: SocketFrames, text: string): Promise<{ rows: (string | null)[][]; error?: { code: string; message: string } }> => {
  frames.socket.write(encodeQuery(text));
  const rows: (string | null)[][] = [];
  let error: { code: string; message: string } | undefined;
  for (;;) {
    const message = decodeBackend(await frames.next());
    if (message.type === 'DataRow') rows.push(message.values.map((v) => (v === null ? null : v.toString('utf8'))));
    else if (message.type === 'ErrorResponse') error = { code: message.fields.C ?? '', message: message.fields.M ?? '' };
    else if (message.type === 'ReadyForQuery') break;
  }
  return error === undefined ? { rows } : { rows, error };
};
