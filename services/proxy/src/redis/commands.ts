/** What the Redis adapter needs to know about a command beyond the policy's decision. */

/** Commands a client may send before it authenticates (everything else gets NOAUTH). */
export const PRE_AUTH_COMMANDS = new Set(['AUTH', 'HELLO', 'PING', 'QUIT']);

/** Commands that put a connection in subscriber mode; their confirmations are not plain replies. */
export const SUBSCRIBE_COMMANDS = new Set(['SUBSCRIBE', 'PSUBSCRIBE', 'SSUBSCRIBE', 'UNSUBSCRIBE', 'PUNSUBSCRIBE', 'SUNSUBSCRIBE']);

/**
 * Commands Sluice answers itself and never forwards: they would change the upstream
 * connection's identity (AUTH, RESET) which Sluice owns, not the agent.
 */
export const REFUSED_COMMANDS = new Set(['RESET']);

/** Longest argument and command text kept in audit records; the approval hash uses the full args. */
const MAX_ARG_CHARS = 1024;
const MAX_TEXT_CHARS = 8192;

/**
 * `SET key "a value"`: name and arguments, quoted where they hold spaces, bounded for the audit
 * record; whether it was cut, and the command's full size (arguments and the spaces between them),
 * so a 50 MB SET is recorded as its beginning, marked truncated.
 */
export const describeCommand = (args: readonly Buffer[]): { readonly text: string; readonly truncated: boolean; readonly bytes: number } => {
  let text = '';
  let truncated = false;
  let bytes = Math.max(0, args.length - 1);
  for (const arg of args) bytes += arg.length;
  for (const [index, arg] of args.entries()) {
    let part = arg.length > MAX_ARG_CHARS * 4 ? arg.subarray(0, MAX_ARG_CHARS * 4).toString('utf8') : arg.toString('utf8');
    if (part.length > MAX_ARG_CHARS) {
      part = `${part.slice(0, MAX_ARG_CHARS)}…`;
      truncated = true;
    }
    if (index === 0) part = part.toUpperCase();
    else if (part === '' || /[\s"]/.test(part)) part = JSON.stringify(part);
    text += (index === 0 ? '' : ' ') + part;
    if (text.length > MAX_TEXT_CHARS) return { text: `${text.slice(0, MAX_TEXT_CHARS)}…`, truncated: true, bytes };
  }
  return { text, truncated, bytes };
};

export interface HelloArgs {
  readonly protocol: 2 | 3 | undefined;
  readonly auth: { readonly username: string; readonly password: string } | undefined;
  readonly setName: string | undefined;
}

/**
 * Parses `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
 * @see https://redis.io/docs/latest/commands/hello/
 * Returns an error message for the client when the arguments are wrong.
 */
export const parseHello = (args: readonly Buffer[]): HelloArgs | { readonly error: string } => {
  if (args.length === 1) return { protocol: undefined, auth: undefined, setName: undefined };
  const version = args[1]!.toString();
  if (version !== '2' && version !== '3') {
    return /^\d+$/.test(version)
      ? { error: 'NOPROTO unsupported protocol version' }
      : { error: 'ERR Protocol version is not an integer or out of range' };
  }
  let auth: HelloArgs['auth'];
  let setName: string | undefined;
  for (let i = 2; i < args.length; i++) {
    const option = args[i]!.toString().toUpperCase();
    if (option === 'AUTH' && i + 2 < args.length) {
      auth = { username: args[i + 1]!.toString(), password: args[i + 2]!.toString() };
      i += 2;
    } else if (option === 'SETNAME' && i + 1 < args.length) {
      setName = args[i + 1]!.toString();
      i += 1;
    } else {
      return { error: `ERR Syntax error in HELLO option '${args[i]!.toString()}'` };
    }
  }
  return { protocol: version === '3' ? 3 : 2, auth, setName };
};

/** The token of `AUTH <token>` or `AUTH <user> <token>`, or undefined for a wrong arity. */
export const authToken = (args: readonly Buffer[]): string | undefined =>
  args.length === 2 ? args[1]!.toString() : args.length === 3 ? args[2]!.toString() : undefined;

/** Hash reads whose reply values belong to named fields, so column rules apply to them. */
export const fieldHint = (
  name: string,
  args: readonly Buffer[],
  protocol: 2 | 3,
): { kind: 'pairs' } | { kind: 'fields'; names: string[] } | undefined => {
  switch (name) {
    case 'HGET':
      return args[2] ? { kind: 'fields', names: [args[2].toString()] } : undefined;
    case 'HMGET':
      return { kind: 'fields', names: args.slice(2).map(String) };
    case 'HGETALL':
      // RESP3 answers a map, which carries its keys itself.
      return protocol === 2 ? { kind: 'pairs' } : undefined;
    default:
      return undefined;
  }
};
