import { redisKeyName as keyName, sortOptions, sortPatternKey, type Action, type AssessedAction, type Risk } from '@sluice/contracts';

/**
 * Where a command's keys sit, the way Redis's COMMAND INFO describes them: 1-based positions in
 * the argument list (0 is the command name), `last` negative counts from the end, `step` 2 for
 * key/value pairs. `numkeys` means the count sits at `first` and the keys follow it.
 * @see https://redis.io/docs/latest/develop/reference/key-specs/
 */
export type KeySpec =
  | { readonly first: number; readonly last: number; readonly step: number }
  | { readonly numkeys: number; readonly extraFirst?: boolean }
  | { readonly streams: true }
  | { readonly pattern: 'keys' | 'scan' | 'random' }
  | { readonly sort: true }
  | undefined;

export interface RedisCommandSpec {
  readonly action: Action;
  readonly risk: Risk;
  readonly keys: KeySpec;
  /** Variadic-key writes: touching more than one key is high risk. */
  readonly multiKeyWrite?: boolean;
  /**
   * A write whose reply carries stored values (GETSET, LPOP, INCRBY k 0) or that copies them to
   * another key (RENAME, SUNIONSTORE): which of its keys it reads that way. A guard on `read`
   * guards these keys too (Policy's `failedMatcher`).
   */
  readonly readsKeys?: 'all' | 'first' | 'second' | 'rest';
}

const k = (first: number, last: number, step = 1): KeySpec => ({ first, last, step });
const read = (keys?: KeySpec): RedisCommandSpec => ({ action: 'read', risk: 'low', keys });
const write = (keys?: KeySpec, multiKeyWrite = false): RedisCommandSpec => ({ action: 'write', risk: 'medium', keys, multiKeyWrite });
/** A write that takes stored values out of the keys `readsKeys` picks (see RedisCommandSpec). */
const take = (readsKeys: NonNullable<RedisCommandSpec['readsKeys']>, keys?: KeySpec, multiKeyWrite = false): RedisCommandSpec => ({ ...write(keys, multiKeyWrite), readsKeys });
const admin: RedisCommandSpec = { action: 'admin', risk: 'critical', keys: undefined };
const ONE = k(1, 1);
const ALL = k(1, -1);

/** @see https://redis.io/docs/latest/commands/ */
const COMMANDS: ReadonlyMap<string, RedisCommandSpec> = new Map(
  Object.entries({
    // strings
    get: read(ONE), getrange: read(ONE), substr: read(ONE), strlen: read(ONE), mget: read(ALL), getex: take('all', ONE), getdel: take('all', ONE),
    set: write(ONE), setnx: write(ONE), setex: write(ONE), psetex: write(ONE), append: write(ONE), setrange: write(ONE), getset: take('all', ONE),
    incr: take('all', ONE), incrby: take('all', ONE), incrbyfloat: take('all', ONE), decr: take('all', ONE), decrby: take('all', ONE),
    mset: write(k(1, -1, 2), true), msetnx: write(k(1, -1, 2), true), lcs: read(k(1, 2)),
    // keys
    del: write(ALL, true), unlink: write(ALL, true), exists: read(ALL), touch: read(ALL), type: read(ONE), ttl: read(ONE), pttl: read(ONE),
    expiretime: read(ONE), pexpiretime: read(ONE), expire: write(ONE), pexpire: write(ONE), expireat: write(ONE), pexpireat: write(ONE),
    persist: write(ONE), rename: take('first', k(1, 2)), renamenx: take('first', k(1, 2)), copy: take('first', k(1, 2)), dump: read(ONE), restore: write(ONE),
    randomkey: read({ pattern: 'random' }), keys: read({ pattern: 'keys' }), scan: read({ pattern: 'scan' }), dbsize: read(), sort: write({ sort: true }), sort_ro: read({ sort: true }),
    // hashes
    hget: read(ONE), hmget: read(ONE), hgetall: read(ONE), hkeys: read(ONE), hvals: read(ONE), hlen: read(ONE), hexists: read(ONE),
    hstrlen: read(ONE), hscan: read(ONE), hrandfield: read(ONE), httl: read(ONE), hpttl: read(ONE), hexpiretime: read(ONE), hpexpiretime: read(ONE),
    hset: write(ONE), hsetnx: write(ONE), hmset: write(ONE), hdel: write(ONE), hincrby: take('all', ONE), hincrbyfloat: take('all', ONE),
    hexpire: write(ONE), hpexpire: write(ONE), hexpireat: write(ONE), hpexpireat: write(ONE), hpersist: write(ONE), hgetdel: take('all', ONE), hgetex: take('all', ONE), hsetex: write(ONE),
    // lists
    lindex: read(ONE), llen: read(ONE), lrange: read(ONE), lpos: read(ONE), lpush: write(ONE), rpush: write(ONE), lpushx: write(ONE),
    rpushx: write(ONE), lpop: take('all', ONE), rpop: take('all', ONE), lset: write(ONE), lrem: write(ONE), ltrim: write(ONE), linsert: write(ONE),
    rpoplpush: take('first', k(1, 2)), lmove: take('first', k(1, 2)), blpop: take('all', k(1, -2), true), brpop: take('all', k(1, -2), true),
    brpoplpush: take('first', k(1, 2)), blmove: take('first', k(1, 2)), lmpop: take('all', { numkeys: 1 }, true), blmpop: take('all', { numkeys: 2 }, true),
    // sets
    smembers: read(ONE), sismember: read(ONE), smismember: read(ONE), scard: read(ONE), srandmember: read(ONE), sscan: read(ONE),
    sdiff: read(ALL), sinter: read(ALL), sunion: read(ALL), sintercard: read({ numkeys: 1 }), sadd: write(ONE), srem: write(ONE),
    spop: take('all', ONE), smove: take('first', k(1, 2)), sdiffstore: take('rest', ALL), sinterstore: take('rest', ALL), sunionstore: take('rest', ALL),
    // sorted sets
    zrange: read(ONE), zrangebyscore: read(ONE), zrevrangebyscore: read(ONE), zrangebylex: read(ONE), zrevrangebylex: read(ONE),
    zrevrange: read(ONE), zrank: read(ONE), zrevrank: read(ONE), zscore: read(ONE), zmscore: read(ONE), zcard: read(ONE), zcount: read(ONE),
    zlexcount: read(ONE), zscan: read(ONE), zrandmember: read(ONE), zdiff: read({ numkeys: 1 }), zinter: read({ numkeys: 1 }),
    zunion: read({ numkeys: 1 }), zintercard: read({ numkeys: 1 }), zadd: write(ONE), zincrby: take('all', ONE), zrem: write(ONE),
    zremrangebyrank: write(ONE), zremrangebyscore: write(ONE), zremrangebylex: write(ONE), zpopmin: take('all', ONE), zpopmax: take('all', ONE),
    bzpopmin: take('all', k(1, -2), true), bzpopmax: take('all', k(1, -2), true), zrangestore: take('second', k(1, 2)),
    zdiffstore: take('rest', { numkeys: 2, extraFirst: true }, true), zinterstore: take('rest', { numkeys: 2, extraFirst: true }, true),
    zunionstore: take('rest', { numkeys: 2, extraFirst: true }, true), zmpop: take('all', { numkeys: 1 }, true), bzmpop: take('all', { numkeys: 2 }, true),
    // streams
    xadd: write(ONE), xdel: write(ONE), xtrim: write(ONE), xlen: read(ONE), xrange: read(ONE), xrevrange: read(ONE), xack: write(ONE),
    xclaim: take('all', ONE), xautoclaim: take('all', ONE), xpending: read(ONE), xsetid: write(ONE), xread: read({ streams: true }),
    xreadgroup: take('all', { streams: true }), xackdel: write(ONE), xdelex: write(ONE),
    // bitmaps, hyperloglog, geo
    // SETBIT answers with the bit it replaced: setting each bit and setting it back reads the value.
    getbit: read(ONE), bitcount: read(ONE), bitpos: read(ONE), bitfield_ro: read(ONE), setbit: take('all', ONE), bitfield: take('all', ONE),
    bitop: take('rest', k(2, -1), true), pfadd: write(ONE), pfcount: read(ALL), pfmerge: take('rest', ALL, true), geoadd: write(ONE), geodist: read(ONE),
    geohash: read(ONE), geopos: read(ONE), geosearch: read(ONE), georadius_ro: read(ONE), georadiusbymember_ro: read(ONE),
    georadius: write(ONE), georadiusbymember: write(ONE), geosearchstore: take('second', k(1, 2)),
    // connection and transactions
    ping: read(), echo: read(), quit: read(), reset: read(), auth: read(), hello: read(), multi: read(), exec: read(), discard: read(),
    watch: read(ALL), unwatch: read(), readonly: read(), readwrite: read(), wait: read(), waitaof: read(), time: read(), lastsave: read(),
    info: read(), lolwut: read(), role: read(),
    // pub/sub: channels are not keys
    publish: write(), spublish: write(), subscribe: read(), psubscribe: read(), ssubscribe: read(), unsubscribe: read(),
    punsubscribe: read(), sunsubscribe: read(),
    // server-level: CONTRACT §2 lists these as admin
    select: admin, swapdb: admin, move: admin, flushall: admin, flushdb: admin, shutdown: admin, debug: admin, acl: admin, module: admin,
    script: admin, eval: admin, evalsha: admin, eval_ro: admin, evalsha_ro: admin, function: admin, fcall: admin, fcall_ro: admin,
    migrate: admin, monitor: admin, replicaof: admin, slaveof: admin, save: admin, bgsave: admin, bgrewriteaof: admin, sync: admin,
    psync: admin, failover: admin, cluster: admin, asking: admin, config: admin, replconf: admin, pfdebug: admin, pfselftest: admin,
  }),
);

/** Containers whose meaning is in the subcommand; unknown subcommands are admin. */
const SUBCOMMANDS: ReadonlyMap<string, ReadonlyMap<string, RedisCommandSpec>> = new Map([
  [
    'client',
    new Map(
      Object.entries({
        setname: read(), getname: read(), id: read(), info: read(), setinfo: read(), tracking: read(), trackinginfo: read(),
        getredir: read(), caching: read(), 'no-touch': read(),
        // OFF/SKIP would put replies out of step with commands: the proxy refuses them.
        reply: admin,
        kill: admin, pause: admin, unpause: admin, list: admin, 'no-evict': admin, unblock: admin,
      }),
    ),
  ],
  ['object', new Map(Object.entries({ encoding: read(k(2, 2)), freq: read(k(2, 2)), idletime: read(k(2, 2)), refcount: read(k(2, 2)), help: read() }))],
  ['memory', new Map(Object.entries({ usage: read(k(2, 2)), stats: read(), doctor: read(), 'malloc-stats': read(), help: read(), purge: admin }))],
  ['command', new Map(Object.entries({ count: read(), docs: read(), info: read(), list: read(), getkeys: read(), getkeysandflags: read(), help: read() }))],
  ['xinfo', new Map(Object.entries({ stream: read(k(2, 2)), groups: read(k(2, 2)), consumers: read(k(2, 2)), help: read() }))],
  [
    'xgroup',
    new Map(
      Object.entries({ create: write(k(2, 2)), setid: write(k(2, 2)), destroy: write(k(2, 2)), createconsumer: write(k(2, 2)), delconsumer: write(k(2, 2)), help: read() }),
    ),
  ],
  ['pubsub', new Map(Object.entries({ channels: read(), numsub: read(), numpat: read(), shardchannels: read(), shardnumsub: read(), help: read() }))],
  ['latency', new Map(Object.entries({ latest: read(), history: read(), doctor: read(), graph: read(), histogram: read(), help: read(), reset: admin }))],
  // SLOWLOG GET shows other clients' commands with their arguments (values): admin, like MONITOR.
  ['slowlog', new Map(Object.entries({ get: admin, len: read(), help: read(), reset: admin }))],
]);

const UNKNOWN: RedisCommandSpec = admin;

export interface RedisClassification extends AssessedAction {
  readonly command: string;
  /** Keys named literally. */
  readonly keys: readonly string[];
  /**
   * Redis glob patterns (KEYS, SCAN MATCH, SORT BY/GET): each stands for every key it can match.
   * A command without MATCH that may return any key (SCAN, RANDOMKEY) carries `*`.
   */
  readonly keyPatterns: readonly string[];
  /**
   * A write's keys whose stored values its reply carries or it copies elsewhere (GETSET, SET … GET,
   * LPOP, RENAME's source, SORT … STORE's source): the policy's guards on `read` cover them too.
   */
  readonly readKeys?: readonly string[];
}

const text = (arg: Buffer | string | undefined): string => (arg === undefined ? '' : typeof arg === 'string' ? arg : arg.toString('latin1'));
const isOption = (arg: Buffer | string | undefined, option: string): boolean => text(arg).toLowerCase() === option;

interface TouchedKeys {
  readonly keys: string[];
  readonly patterns: string[];
}

/** XREAD/XREADGROUP options followed by one value: COUNT, BLOCK, CLAIM (Redis 8.4), MAXCOUNT and MAXSIZE (8.10). */
const STREAM_READ_OPTIONS_WITH_VALUE: ReadonlySet<string> = new Set(['count', 'block', 'claim', 'maxcount', 'maxsize']);

/**
 * The keys of XREAD/XREADGROUP, read the way xreadCommand walks its options, so a group or
 * consumer named `streams` cannot move where the keys are taken from. An option this walk does
 * not know (one a newer Redis added) leaves the keys unknown: the command may read any key (`*`),
 * never none, which every rule on keys would pass over.
 */
const streamKeys = (args: readonly (Buffer | string)[]): TouchedKeys => {
  const unknown: TouchedKeys = { keys: [], patterns: ['*'] };
  for (let index = 1; index < args.length; index++) {
    const more = args.length - index - 1;
    const option = text(args[index]).toLowerCase();
    if (STREAM_READ_OPTIONS_WITH_VALUE.has(option) && more >= 1) index++;
    else if (option === 'group' && more >= 2) index += 2;
    else if (option === 'streams' && more >= 1) {
      const rest = args.slice(index + 1);
      return { keys: rest.slice(0, Math.floor(rest.length / 2)).map(keyName), patterns: [] };
    } else if (option !== 'noack') return unknown;
  }
  return unknown;
};

const keysOf = (spec: KeySpec, args: readonly (Buffer | string)[]): TouchedKeys => {
  const none: TouchedKeys = { keys: [], patterns: [] };
  if (!spec) return none;
  const count = args.length;
  if ('pattern' in spec) {
    if (spec.pattern === 'keys') return { keys: [], patterns: [keyName(args[1])] };
    if (spec.pattern === 'random') return { keys: [], patterns: ['*'] };
    // SCAN cursor [MATCH pattern] [COUNT n] [TYPE t], read in pairs as Redis does (the last MATCH
    // wins there, so every one counts here); without MATCH the scan may return every key.
    const patterns: string[] = [];
    for (let index = 2; index + 1 < count; index += 2) if (isOption(args[index], 'match')) patterns.push(keyName(args[index + 1]));
    return { keys: [], patterns: patterns.length > 0 ? patterns : ['*'] };
  }
  if ('sort' in spec) {
    const options = sortOptions(args);
    const keys = [keyName(args[1])];
    if (options.store !== undefined) keys.push(options.store);
    const patterns = [options.by, ...options.gets].flatMap((pattern) => {
      const key = pattern === undefined ? undefined : sortPatternKey(pattern)?.key;
      return key === undefined ? [] : [key];
    });
    return { keys, patterns };
  }
  if ('streams' in spec) return streamKeys(args);
  if ('numkeys' in spec) {
    const numkeys = Number.parseInt(text(args[spec.numkeys]), 10);
    const keys = spec.extraFirst ? [keyName(args[1])] : [];
    if (!Number.isFinite(numkeys) || numkeys < 0) return { keys, patterns: [] };
    for (let index = spec.numkeys + 1; index <= spec.numkeys + numkeys && index < count; index++) keys.push(keyName(args[index]));
    return { keys, patterns: [] };
  }
  const last = spec.last < 0 ? count + spec.last : spec.last;
  const keys: string[] = [];
  for (let index = spec.first; index <= last && index < count; index += spec.step) keys.push(keyName(args[index]));
  return { keys, patterns: [] };
};

/**
 * The option that makes a write answer with a stored value: SET … GET returns the value it
 * replaces, ZADD … INCR the member's score (ZADD k INCR 0 m is ZSCORE). Any argument spelled so
 * counts, even where Redis would read it as a value or a member name (fail closed: it only adds a
 * guard). Undefined when the write answers with no stored value.
 */
const readingOption = (name: string, args: readonly (Buffer | string)[]): 'GET' | 'INCR' | undefined => {
  if (name === 'set') return args.some((arg, index) => index > 2 && isOption(arg, 'get')) ? 'GET' : undefined;
  if (name === 'zadd') return args.some((arg, index) => index > 1 && isOption(arg, 'incr')) ? 'INCR' : undefined;
  return undefined;
};

const readKeysOf = (which: RedisCommandSpec['readsKeys'], keys: readonly string[]): readonly string[] | undefined => {
  switch (which) {
    case undefined:
      return undefined;
    case 'all':
      return keys;
    case 'first':
      return keys.slice(0, 1);
    case 'second':
      return keys.slice(1, 2);
    case 'rest':
      return keys.slice(1);
  }
};

/** A command's spec and its name as classified (`CLIENT SETNAME`), or no spec for an unknown one. */
const specOf = (args: readonly (Buffer | string)[]): { readonly name: string; readonly command: string; readonly spec: RedisCommandSpec | undefined } => {
  const name = text(args[0]).toLowerCase();
  const container = SUBCOMMANDS.get(name);
  if (!container) return { name, command: name.toUpperCase(), spec: COMMANDS.get(name) };
  const sub = text(args[1]).toLowerCase();
  return { name, command: `${name.toUpperCase()} ${sub.toUpperCase()}`, spec: container.get(sub) };
};

/**
 * Commands whose classification below reads arguments other than their name, subcommand and keys
 * (options such as STORE, DB, BCAST): redisShape leaves them out. A new case in classifyRedis that
 * reads another argument belongs here too.
 */
const READS_OPTIONS = new Set(['copy', 'sort', 'sort_ro', 'georadius', 'georadiusbymember', 'client']);

/**
 * The shape of a command whose classification (and so its decision) depends only on its name and
 * subcommand, its number of arguments and its key names: keys at fixed positions, no option read.
 * `keys` are its key names, in order. Undefined for any other command (key patterns, SORT, numkeys,
 * streams, options that change the action, unknown commands): those are decided by their exact
 * arguments. A decision the policy makes for one command of a shape holds for every command of that
 * shape whose keys match the same of the rules' key globs (`Policy.decide`'s `redisKeyGlobs`).
 */
export const redisShape = (args: readonly (Buffer | string)[]): { readonly shape: string; readonly keys: readonly string[] } | undefined => {
  const { name, command, spec } = specOf(args);
  if (!spec || READS_OPTIONS.has(name)) return undefined;
  const keySpec = spec.keys;
  if (keySpec === undefined) return { shape: `${command} ${args.length}`, keys: [] };
  if (!('first' in keySpec)) return undefined;
  const touched = keysOf(keySpec, args);
  // SET … GET and ZADD … INCR read as well as write (classifyRedis): another shape than a write that only writes.
  const option = readingOption(name, args);
  const reads = option === undefined ? '' : ` ${option}`;
  return { shape: `${command} ${args.length}${reads}`, keys: touched.keys };
};

/** Classifies a Redis command by name (and subcommand): action, risk and the keys it touches. */
export const classifyRedis = (args: readonly (Buffer | string)[]): RedisClassification => {
  const { name, command, spec } = specOf(args);
  if (!spec) {
    return { command, action: UNKNOWN.action, risk: UNKNOWN.risk, keys: [], keyPatterns: [], reason: `${command} is an administrative or unknown command` };
  }
  const touched = keysOf(spec.keys, args);
  const keys = touched.keys;
  const keyPatterns = touched.patterns;
  // CLIENT TRACKING … BCAST announces changes to every key under its prefixes (all keys without one).
  if (command === 'CLIENT TRACKING' && args.some((arg, index) => index > 2 && isOption(arg, 'bcast'))) {
    const prefixes: string[] = [];
    for (let index = 3; index + 1 < args.length; index++) if (isOption(args[index], 'prefix')) prefixes.push(`${keyName(args[++index])}*`);
    return { command, action: 'read', risk: 'low', keys, keyPatterns: prefixes.length > 0 ? prefixes : ['*'], reason: 'CLIENT TRACKING BCAST names the keys that change' };
  }
  // COPY … DB n writes into another database than the resource's.
  if (name === 'copy' && args.some((arg, index) => index > 2 && isOption(arg, 'db'))) {
    return { command, action: 'admin', risk: 'critical', keys, keyPatterns, reason: 'COPY … DB writes into another database' };
  }
  if (name === 'sort') {
    if (sortOptions(args).store === undefined) return { command, action: 'read', risk: 'low', keys, keyPatterns, reason: `${command} reads` };
    return { command, action: 'write', risk: 'medium', keys, keyPatterns, readKeys: keys.slice(0, 1), reason: `${command} … STORE writes what it reads` };
  }
  // GEORADIUS … STORE writes; without it it only reads.
  if (name === 'georadius' || name === 'georadiusbymember') {
    const store = args.findIndex((arg, index) => index > 1 && /^store(dist)?$/i.test(text(arg)));
    if (store < 0) return { command, action: 'read', risk: 'low', keys, keyPatterns, reason: `${command} reads` };
    return { command, action: 'write', risk: 'medium', keys: [...keys, keyName(args[store + 1])], keyPatterns, readKeys: keys, reason: `${command} … STORE writes what it reads` };
  }
  const option = readingOption(name, args);
  if (option !== undefined) {
    return { command, action: 'write', risk: spec.risk, keys, keyPatterns, readKeys: keys, reason: `${command} … ${option} writes and returns the stored value` };
  }
  const readKeys = readKeysOf(spec.readsKeys, keys);
  const reads = readKeys === undefined ? {} : { readKeys };
  if (spec.action === 'write' && spec.multiKeyWrite && keys.length > 1) {
    return { command, action: 'write', risk: 'high', keys, keyPatterns, ...reads, reason: `${command} writes ${keys.length} keys` };
  }
  const verb = spec.action === 'read' ? 'reads' : spec.action === 'write' ? (readKeys === undefined ? 'writes' : 'writes what it reads') : 'is administrative';
  return { command, action: spec.action, risk: spec.risk, keys, keyPatterns, ...reads, reason: `${command} ${verb}` };
};
