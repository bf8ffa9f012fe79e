/**
 * What an agent's StartupMessage may ask of the target session. A driver legitimately sets a few
 * session settings at connect time (application_name, DateStyle, timeouts, search_path, …); those
 * reach the target as the agent sent them. Everything else is refused with a FATAL naming it,
 * because a startup parameter is applied before any command is decided: `role`,
 * `default_transaction_read_only`, `standard_conforming_strings` and the like would undo what
 * policy set, or make the proxy read SQL differently from the target.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html (StartupMessage)
 * @see https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-OPTIONS
 */
import { SluiceErrorCode } from '@sluice/contracts';
import { SqlStateError } from './sqlstate.js';
import { ClientEncoding, EncodingConversionError, pgEncodingName } from './client-encoding.js';

/**
 * Settings (lower case, as PostgreSQL matches GUC names) a driver may set at startup. Each is a
 * harmless per-session setting an agent may also change with SET on a read grant.
 */
export const STARTUP_SETTINGS: ReadonlySet<string> = new Set([
  'application_name',
  'client_encoding',
  'datestyle',
  'timezone',
  'intervalstyle',
  'extra_float_digits',
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'idle_session_timeout',
  'search_path',
  // Drivers and pools set these per connection (JDBC, SQLAlchemy, pgx's RuntimeParams): each only
  // chooses how this session's own transactions run or which notices it gets.
  'default_transaction_isolation',
  'default_transaction_deferrable',
  'client_min_messages',
  'bytea_output',
]);


/** The startup packet's own keys, which PostgreSQL compares exactly (not GUC names). */
const USER = 'user';
const DATABASE = 'database';
const OPTIONS = 'options';

/** Why a startup packet is refused: the SQLSTATE and a message (written for the agent) naming the parameter. */
export class StartupParameterRefusal extends SqlStateError {
  readonly code = SluiceErrorCode.PolicyDenied;
}

export interface StartupTarget {
  /** The resource's name, which an agent may use as its database name. */
  readonly resourceName: string;
  /** The target's database: the session always runs there. */
  readonly database: string;
}

/**
 * One setting as the agent sent it: its name in lower case, its value as text (for checks and the
 * record: read in the agent's client encoding), and the value's bytes, which the target gets
 * unconverted, as the server takes a startup packet's.
 */
export type StartupSetting = readonly [name: string, value: string, bytes: Buffer];

export interface StartupRequest {
  /** The user name the agent sent (any; the session runs as the resource's credentials). */
  readonly user: string | undefined;
  /** The database name the agent sent. */
  readonly database: string | undefined;
  /** Settings to pass on, in the order PostgreSQL applies them (later wins). */
  readonly settings: readonly StartupSetting[];
}

/**
 * Splits a libpq `options` value into words as PostgreSQL does: white space separates, a
 * backslash takes the next character literally (`\ ` is a space, `\\` a backslash).
 * @see https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-OPTIONS
 */
export const splitOptions = (value: string): string[] => {
  const words: string[] = [];
  let word: string | undefined;
  for (let index = 0; index < value.length; index++) {
    const char = value[index]!;
    if (/[ \t\n\v\f\r]/.test(char)) {
      if (word !== undefined) words.push(word);
      word = undefined;
      continue;
    }
    if (char === '\\' && index + 1 < value.length) {
      index++;
      word = (word ?? '') + value[index]!;
      continue;
    }
    word = (word ?? '') + char;
  }
  if (word !== undefined) words.push(word);
  return words;
};

const refuseSetting = (name: string): StartupParameterRefusal =>
  new StartupParameterRefusal('42501', `permission denied: startup parameter "${name}" cannot be set through sluice`);

/** Checks one setting; returns it with its name in lower case. */
const checkSetting = (rawName: string, bytes: Buffer): StartupSetting => {
  const name = rawName.toLowerCase();
  const value = bytes.toString('utf8');
  if (!STARTUP_SETTINGS.has(name)) throw refuseSetting(rawName);
  if (name === 'client_encoding') {
    try {
      ClientEncoding.named(value);
    } catch (error) {
      if (error instanceof EncodingConversionError) throw new StartupParameterRefusal(error.sqlstate, error.message);
      throw error;
    }
  }
  return [name, value, bytes];
};

/**
 * The settings carried by `options`: only `-c name=value`, `-cname=value` or `--name=value` of
 * an allowed setting (PostgreSQL reads `-` in such a name as `_`); any other server switch is refused.
 */
const optionSettings = (bytes: Buffer): StartupSetting[] => {
  // Split as the server does, on the bytes (one latin1 character each): only ASCII white space
  // and backslashes separate or escape, whatever the encoding of the rest.
  const words = splitOptions(bytes.toString('latin1'));
  const settings: StartupSetting[] = [];
  for (let index = 0; index < words.length; index++) {
    const word = words[index]!;
    let assignment: string | undefined;
    if (word === '-c') {
      assignment = words[++index];
      if (assignment === undefined) throw new StartupParameterRefusal('42601', 'startup parameter "options": -c needs name=value');
    } else if (word.startsWith('--')) assignment = word.slice(2);
    else if (word.startsWith('-c')) assignment = word.slice(2);
    else throw new StartupParameterRefusal('42501', `permission denied: startup parameter "options" may only carry -c name=value, not "${word}"`);
    const equals = assignment.indexOf('=');
    if (equals <= 0) throw new StartupParameterRefusal('42601', `startup parameter "options": "${assignment}" needs a value (name=value)`);
    const name = Buffer.from(assignment.slice(0, equals), 'latin1').toString('utf8');
    settings.push(checkSetting(name.replaceAll('-', '_'), Buffer.from(assignment.slice(equals + 1), 'latin1')));
  }
  return settings;
};

/**
 * Reads a StartupMessage's parameters (without `_pq_.` protocol options). Throws a
 * StartupParameterRefusal for a database other than the target's or the resource's (or the user
 * name, which drivers send when no database is given), and for any parameter outside
 * STARTUP_SETTINGS.
 */
export const readStartupParameters = (parameters: ReadonlyMap<string, Buffer>, target: StartupTarget): StartupRequest => {
  const user = parameters.get(USER)?.toString('utf8');
  const database = parameters.get(DATABASE)?.toString('utf8');
  if (database !== undefined && database !== '' && database !== target.database && database !== target.resourceName && database !== user) {
    throw new StartupParameterRefusal('3D000', `database "${database}" does not exist`);
  }
  // `options` is applied first by PostgreSQL, the other parameters after it (so they win).
  const fromOptions = parameters.has(OPTIONS) ? optionSettings(parameters.get(OPTIONS)!) : [];
  const direct: StartupSetting[] = [];
  for (const [name, value] of parameters) {
    if (name === USER || name === DATABASE || name === OPTIONS) continue;
    // A copy: the value is a view of the socket chunk the packet came in.
    direct.push(checkSetting(name, Buffer.from(value)));
  }
  return { user, database, settings: inClientEncoding([...fromOptions, ...direct]) };
};

/** The settings' texts read in the client encoding they ask for, when that is not UTF8 (their bytes stay as sent). */
const inClientEncoding = (settings: StartupSetting[]): StartupSetting[] => {
  const requested = settings.findLast(([name]) => name === 'client_encoding')?.[1];
  const encoding = requested === undefined ? undefined : ClientEncoding.named(requested);
  if (!encoding) return settings;
  return settings.map(([name, value, bytes]): StartupSetting => {
    try {
      return [name, encoding.decode(bytes), bytes];
    } catch {
      return [name, value, bytes];
    }
  });
};

/** The client encoding the agent asked for at startup (the last one given wins), or undefined. */
export const requestedClientEncoding = (request: StartupRequest): string | undefined =>
  request.settings.findLast(([name]) => name === 'client_encoding')?.[1];

/**
 * The parameters the target session is opened with: the agent's settings, with client_encoding
 * UTF8 (the server's default would be the database's encoding) unless the agent asked for SQL_ASCII,
 * which passes through unconverted. Another client encoding is converted by the proxy at its edge;
 * the other values go as the agent's bytes, unconverted, as the server takes them from a client
 * (an application_name with a LATIN1 'é' is cleaned by the target exactly as direct).
 * No application_name of the proxy's own: the agent sees the server's default ('').
 */
export const sessionSettings = (request: StartupRequest): [string, string | Buffer][] => {
  const requested = requestedClientEncoding(request);
  const encoding = requested !== undefined && pgEncodingName(requested) === 'SQL_ASCII' ? requested : 'UTF8';
  return [['client_encoding', encoding], ...request.settings.filter(([name]) => name !== 'client_encoding').map(([name, , bytes]): [string, Buffer] => [name, bytes])];
};

/** The startup request as session.started records it: user, database and settings as the agent sent them. */
/**
 * What session.started records of the startup packet. The user name, database name and setting
 * values are texts the agent chose (`application_name` may hold a card number): `maskText` masks
 * them as command texts are, so the record never holds a value it would mask in a command.
 */
export const startedParameters = (
  request: StartupRequest,
  maskText: (text: string) => string,
): { user?: string; database?: string; parameters: Record<string, string> } => ({
  ...(request.user !== undefined ? { user: maskText(request.user) } : {}),
  ...(request.database !== undefined ? { database: maskText(request.database) } : {}),
  parameters: Object.fromEntries(request.settings.map(([name, value]) => [name, maskText(value)])),
});

/**
 * The target's refusal of the session when it is about a value the agent sent (class 22, e.g.
 * 22023 `invalid value for parameter "search_path"`): relayed as the server worded it. Any other
 * refusal (the resource's credentials, a missing database) stays the proxy's generic message.
 */
export const settingRefusedByTarget = (error: { readonly sqlstate?: string | undefined; readonly serverMessage?: string | undefined }): { sqlstate: string; message: string } | undefined =>
  error.sqlstate?.startsWith('22') && error.serverMessage ? { sqlstate: error.sqlstate, message: error.serverMessage } : undefined;
