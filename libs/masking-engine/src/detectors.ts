import { isIPv6 } from 'node:net';
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import { isValidIBAN } from 'ibantools';
import type { Strategy } from './api.js';
import { cardBrandValid, digitsOf, luhnValid, ssnValid } from './checksums.js';
import type { Features } from './features.js';

/**
 * What the column (or JSON key) name says about its content. Some values are only recognisable
 * with this context: a bare 9-digit number is an SSN in a column called `ssn` and an id anywhere
 * else.
 */
export const Hint = {
  none: 0,
  /** Bare 9-digit numbers are SSNs. */
  ssn: 1,
  /** Bare digit runs (no `+`, no separators) are phone numbers. */
  phone: 2,
  /** The whole value is a secret (`password`, `api_key`, `client_secret`, …). */
  secret: 4,
} as const;

const HINT_PATTERNS: readonly [RegExp, number][] = [
  [/ssn|social_?sec|tax_?id(?:_?n(?:umbe)?r)?$|(?:^|_)tin$/i, Hint.ssn],
  [/phone|mobile|(?:^|_)(?:tel|cell|fax|msisdn)(?:$|_)/i, Hint.phone],
  [/passw(?:or)?d|(?:^|_)pwd$|passphrase|secret|api_?key|private_?key|access_?key|(?:access|auth|refresh|bearer|session)_?token|^token$/i, Hint.secret],
];

/** The hints a column or JSON key name gives. */
export const hintsOf = (name: string): number => {
  let hints = 0;
  for (const [pattern, hint] of HINT_PATTERNS) if (pattern.test(name)) hints |= hint;
  return hints;
};

/** A sensitive span of a text: [start, end). */
export interface Found {
  start: number;
  end: number;
  detector: Detector;
}

export interface Detector {
  readonly name: string;
  /** Custom detectors may fix their own strategy; built-ins use the profile's. */
  readonly strategy?: Strategy;
  /** False when the features rule out a match: then `find` is not called. */
  gate(features: Features, text: string, hints: number): boolean;
  /** Called only after `gate` passed, with the same features. */
  find(text: string, hints: number, found: Found[], features: Features): void;
  /** The partial form (recognisable, not revealing); undefined means redact. */
  partial(value: string): string | undefined;
  /** The form hashed for the hash strategy, so that `4111 1111…` and `4111-1111…` hash alike. */
  normalise(value: string): string;
}

const identity = (value: string): string => value;
const redactPartial = (): undefined => undefined;
const alnumUpper = (value: string): string => value.replace(/[^A-Za-z0-9]+/g, '').toUpperCase();

/** Keeps the last `keep` digits and every separator; other digits become `*` (same length). */
export const keepLastDigits = (value: string, keep: number): string => {
  let remaining = 0;
  for (let index = 0; index < value.length; index++) {
    const code = value.charCodeAt(index);
    if (code >= 48 && code <= 57) remaining++;
  }
  let out = '';
  for (let index = 0; index < value.length; index++) {
    const char = value[index]!;
    const code = value.charCodeAt(index);
    if (code >= 48 && code <= 57) {
      out += remaining <= keep ? char : '*';
      remaining--;
    } else out += char;
  }
  return out;
};

/**
 * Runs a global pattern and pushes each validated match. When a match fails validation, shorter
 * candidates ending at an earlier separator are tried: greedy patterns swallow a following group
 * (`4111 1111 1111 1111 12`) that the value did not own.
 */
const scanWith = (
  pattern: RegExp,
  text: string,
  found: Found[],
  detector: Detector,
  valid: (candidate: string, match: RegExpExecArray) => boolean,
  separators?: RegExp,
): void => {
  pattern.lastIndex = 0;
  let match: RegExpExecArray | null;
  while ((match = pattern.exec(text)) !== null) {
    let candidate = match[0];
    if (candidate === '') {
      pattern.lastIndex++;
      continue;
    }
    let ok = valid(candidate, match);
    while (!ok && separators) {
      separators.lastIndex = 0;
      let cut = -1;
      let sep: RegExpExecArray | null;
      while ((sep = separators.exec(candidate)) !== null) cut = sep.index;
      if (cut <= 0) break;
      candidate = candidate.slice(0, cut);
      ok = valid(candidate, match);
    }
    if (ok) found.push({ start: match.index, end: match.index + candidate.length, detector });
  }
};

export const creditCard = (): Detector => {
  const pattern = /(?<![\w.,+-])\d(?:[ -]?\d){12,18}(?![\w-]|[.,]\d)/g;
  const detector: Detector = {
    name: 'credit_card',
    gate: (features) => features.strictRun >= 13,
    find: (text, _hints, found) =>
      scanWith(
        pattern,
        text,
        found,
        detector,
        (candidate) => {
          const digits = digitsOf(candidate);
          return digits.length >= 13 && digits.length <= 19 && cardBrandValid(digits) && luhnValid(digits);
        },
        /[ -]/g,
      ),
    partial: (value) => keepLastDigits(value, 4),
    normalise: digitsOf,
  };
  return detector;
};

/**
 * Addresses in any script (RFC 6531: `rené.dupont@exemple.fr`, `用户@例子.广告`), and top-level
 * domains written as punycode (`.xn--p1ai`): an address is personal data whatever its letters.
 */
export const email = (): Detector => {
  // The address starts where its run of local-part characters starts, whatever that character:
  // `_john@corp.com` or one after a stray combining mark is an address too (red team: requiring a
  // letter or digit first left them whole, as no later start passes the look-behind).
  const pattern = /(?<![\p{L}\p{N}\p{M}_.%+-])[\p{L}\p{N}\p{M}_.%+-]{1,64}@(?:[\p{L}\p{N}\p{M}-]{1,63}\.)+(?:\p{L}[\p{L}\p{M}]{1,23}|xn--[A-Za-z0-9-]{1,59})(?![\p{L}\p{N}\p{M}_-]|\.[\p{L}\p{N}])/gu;
  const detector: Detector = {
    name: 'email',
    gate: (features) => features.at,
    // No further validation: a mistyped address (`a..b@x.com`) still identifies a person.
    find: (text, _hints, found) => scanWith(pattern, text, found, detector, () => true),
    partial: (value) => {
      const at = value.lastIndexOf('@');
      // The first character whole, even outside the BMP.
      return `${String.fromCodePoint(value.codePointAt(0)!)}***${value.slice(at)}`;
    },
    normalise: (value) => value.toLowerCase(),
  };
  return detector;
};

/** Regions of the North American Numbering Plan, validated without libphonenumber (fast path). */
const NANP_REGIONS = new Set(['US', 'CA', 'PR', 'GU', 'VI', 'AS', 'MP']);
const NANP_NUMBER = /^1?[2-9]\d{2}[2-9]\d{6}$/;
const DATE_SHAPE = /^(?:\d{4}([-/.])\d{1,2}\1\d{1,2}|\d{1,2}([-/.])\d{1,2}\2\d{2,4})(?!\d)/;
const AMOUNT_SHAPE = /^\d+[.,]\d{1,2}$/;

/**
 * Phone numbers: international (`+44 20 7946 0958`) and national numbers of the default region
 * written with separators (`(415) 555-2671`, `415.555.2671`). A bare digit run counts only in a
 * phone-named column: in free text it is far more often an id. Dates, times, amounts, versions
 * and IPs are rejected by shape before libphonenumber validates the rest.
 */
export const phone = (defaultRegion: string): Detector => {
  const region = defaultRegion.toUpperCase() as CountryCode;
  const nanp = NANP_REGIONS.has(region);
  // Bounded groups and group counts: an unbounded `(?:[ .-]\d+)*` swallows a whole `1 1 1 1 …`
  // text as one candidate, and trimming that back is quadratic.
  const pattern = /(?:(?<=tel:)|(?<![\w.,/:@+-]))(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,15}(?:[ .-]\d{1,15}|[ .-]?\(\d{1,5}\)[ .-]?\d{1,15}){0,7}(?![\w/:@]|[.,-]\d)/g;
  const valid = (candidate: string, hints: number): boolean => {
    const digits = digitsOf(candidate);
    if (digits.length < 7 || digits.length > 15) return false;
    const international = candidate.charCodeAt(0) === 43;
    const runs = candidate.match(/\d+/g) ?? [];
    if (!international) {
      if (runs.length === 1 && !(hints & Hint.phone)) return false;
      if (DATE_SHAPE.test(candidate) || AMOUNT_SHAPE.test(candidate)) return false;
      if (!(hints & Hint.phone)) {
        for (let index = 0; index < runs.length; index++) {
          const run = runs[index]!;
          if (run.length > 4 || (index > 0 && run.length === 1 && !candidate.includes(`(${run})`))) return false;
        }
      }
      if (runs.length > 3 && /^\d+(?:\.\d+)+$/.test(candidate)) return false;
      // NANP national numbers are exactly NXX-NXX-XXXX (optionally after a 1): no libphonenumber
      // call (~15 µs) for the commonest case, nor for 7-digit look-alikes it would reject anyway.
      if (nanp) return NANP_NUMBER.test(digits);
    } else if (digits[0] === '1') {
      return digits.length === 11 && NANP_NUMBER.test(digits);
    }
    return validCached(candidate);
  };
  // Result sets repeat values; libphonenumber is the one slow step, so its verdicts are cached.
  const verdicts = new Map<string, boolean>();
  const validCached = (candidate: string): boolean => {
    let verdict = verdicts.get(candidate);
    if (verdict === undefined) {
      verdict = parsePhoneNumberFromString(candidate, region)?.isValid() ?? false;
      if (verdicts.size >= 4096) verdicts.clear();
      verdicts.set(candidate, verdict);
    }
    return verdict;
  };
  const detector: Detector = {
    name: 'phone',
    // A national NANP number has ten digits; shorter runs need a `+` (international) or a hint.
    gate: (features, text, hints) =>
      features.looseRun >= (nanp ? 10 : 7) || (features.looseRun >= 7 && text.includes('+')) || (features.digits >= 7 && (hints & Hint.phone) !== 0),
    find: (text, hints, found) => scanWith(pattern, text, found, detector, (candidate) => valid(candidate, hints), /[ .-]/g),
    partial: (value) => keepLastDigits(value, 4),
    normalise: (value) => (value.startsWith('+') ? '+' : '') + digitsOf(value),
  };
  return detector;
};

/**
 * US SSNs written `123-45-6789` or `123 45 6789`, with valid area/group/serial. A bare
 * `123456789` is an SSN only in a column (or JSON key) whose name says so (ssn, social_security,
 * tax_id, tin): elsewhere 9-digit numbers are ids.
 */
export const usSsn = (): Detector => {
  // A comma is a field separator here (CSV COPY, array literals, pg_stats.histogram_bounds), not part of a number.
  const separated = /(?<![\w./-])(\d{3})([ -])(\d{2})\2(\d{4})(?![\w-]|[./]\d)/g;
  const bare = /(?<![\w./-])(\d{3})(\d{2})(\d{4})(?![\w-]|[./]\d)/g;
  const valid = (_candidate: string, match: RegExpExecArray): boolean =>
    match.length === 5 ? ssnValid(match[1]!, match[3]!, match[4]!) : ssnValid(match[1]!, match[2]!, match[3]!);
  const detector: Detector = {
    name: 'us_ssn',
    gate: (features) => features.strictRun >= 9,
    find: (text, hints, found) => {
      scanWith(separated, text, found, detector, valid);
      if (hints & Hint.ssn) scanWith(bare, text, found, detector, valid);
    },
    partial: (value) => (/^\d{9}$/.test(value) ? `*****${value.slice(5)}` : keepLastDigits(value, 4)),
    normalise: digitsOf,
  };
  return detector;
};

export const iban = (): Detector => {
  const pattern = /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])/g;
  const detector: Detector = {
    name: 'iban',
    gate: (features, text) => features.ibanStart && text.length >= 15,
    find: (text, _hints, found) =>
      scanWith(pattern, text, found, detector, (candidate) => isValidIBAN(candidate.replace(/ /g, '')), / /g),
    partial: (value) => {
      let keepTail = 4;
      let out = '';
      for (let index = value.length - 1; index >= 0; index--) {
        const char = value[index]!;
        if (char === ' ') out = char + out;
        else if (keepTail > 0) {
          out = char + out;
          keepTail--;
        } else out = (index < 2 ? char : '*') + out;
      }
      return out;
    },
    normalise: alnumUpper,
  };
  return detector;
};

export const ipv4 = (): Detector => {
  const octet = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
  const pattern = new RegExp(`(?<![\\w.-])(?:${octet}\\.){3}${octet}(?!\\w|\\.\\d|-)`, 'g');
  const detector: Detector = {
    name: 'ipv4',
    gate: (features) => features.dots >= 3 && features.digits >= 4,
    find: (text, _hints, found) => scanWith(pattern, text, found, detector, () => true),
    partial: redactPartial,
    normalise: identity,
  };
  return detector;
};

export const ipv6 = (): Detector => {
  const pattern = /(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])/g;
  const detector: Detector = {
    name: 'ipv6',
    // Full form has seven colons; anything shorter is compressed and holds `::`.
    gate: (features, text) => features.colons >= 7 || (features.colons >= 2 && text.includes('::')),
    find: (text, _hints, found) =>
      scanWith(pattern, text, found, detector, (candidate) => /[0-9A-Fa-f]/.test(candidate) && isIPv6(candidate)),
    partial: redactPartial,
    normalise: (value) => value.toLowerCase(),
  };
  return detector;
};

export const jwt = (): Detector => {
  const pattern = /(?<![\w-])eyJ[\w-]{4,}\.[\w-]{2,}\.[\w-]*(?![\w-])/g;
  const detector: Detector = {
    name: 'jwt',
    gate: (_features, text) => text.length >= 20 && text.includes('eyJ'),
    find: (text, _hints, found) =>
      scanWith(pattern, text, found, detector, (candidate) => {
        try {
          const header: unknown = JSON.parse(Buffer.from(candidate.slice(0, candidate.indexOf('.')), 'base64url').toString('utf8'));
          return typeof header === 'object' && header !== null && typeof (header as { alg?: unknown }).alg === 'string';
        } catch {
          return false;
        }
      }),
    partial: redactPartial,
    normalise: identity,
  };
  return detector;
};

const SECRET_KEYWORDS =
  'password|passwd|passphrase|pwd|secret|client[_-]?secret|secret[_-]?key|api[_-]?key|apikey|access[_-]?key|private[_-]?key|(?:access|auth|refresh|bearer|session)[_-]?token|token';

/**
 * API keys of well-known shapes, PEM private key blocks, `password=…`-style assignments (only the
 * value is masked) and SQL `PASSWORD '…'` literals; and, in a secret-named column, the whole value.
 */
export const secret = (): Detector => {
  const tokens =
    /(?<![\w-])(?:A(?:KIA|SIA)[A-Z0-9]{16}|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}|glpat-[A-Za-z0-9_-]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,})(?![\w-])/g;
  const pem = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|$)/g;
  const assignment = new RegExp(
    `(?<![A-Za-z0-9])(?:${SECRET_KEYWORDS})["']?\\s*[:=]\\s*(?:"([^"]{1,400})"|'([^']{1,400})'|([^\\s"'&,;)}\\]]{3,400}))`,
    'gid',
  );
  const sqlPassword = /(?<![\w])(?:PASSWORD|IDENTIFIED\s+BY)\s+E?'((?:[^']|'')*)'/gid;
  const pushGroup = (pattern: RegExp, text: string, found: Found[]): void => {
    pattern.lastIndex = 0;
    let match: RegExpExecArray | null;
    while ((match = pattern.exec(text)) !== null) {
      const indices = match.indices;
      if (!indices) continue;
      for (let group = 1; group < indices.length; group++) {
        const span = indices[group];
        if (!span || span[1] <= span[0]) continue;
        const value = text.slice(span[0], span[1]);
        if (!/^(?:\*+|null|none|true|false|\[REDACTED[^\]]*\])$/i.test(value)) found.push({ start: span[0], end: span[1], detector });
        break;
      }
    }
  };
  // Literal prefixes first: the full patterns (lookbehinds, case-insensitive keyword lists) cost
  // far more than this on the many values that merely contain a dash or an underscore.
  const tokenPrefix = /gh[pousr]_|github_pat_|glpat-|xox[abpr]-|[sr]k_(?:live|test)_|A[KS]IA[A-Z0-9]{16}/;
  const keywordPrefix = /pass|pwd|secret|key|token|identified/i;
  const detector: Detector = {
    name: 'secret',
    gate: (features, text, hints) => (hints & Hint.secret) !== 0 || (text.length >= 8 && (features.secretish || features.upper >= 4)),
    find: (text, hints, found, features) => {
      if (hints & Hint.secret) {
        if (text.length > 0) found.push({ start: 0, end: text.length, detector });
        return;
      }
      if (tokenPrefix.test(text)) scanWith(tokens, text, found, detector, () => true);
      if (text.includes('-----BEGIN')) scanWith(pem, text, found, detector, () => true);
      if (!keywordPrefix.test(text)) return;
      if (features.assigns) pushGroup(assignment, text, found);
      if (text.includes("'")) pushGroup(sqlPassword, text, found);
    },
    partial: redactPartial,
    normalise: identity,
  };
  return detector;
};

export interface CustomDetectorConfig {
  readonly name: string;
  readonly pattern: string;
  readonly validator?: 'luhn' | undefined;
  readonly strategy?: Strategy | undefined;
}

/** A detector from `masking.detectors`: a regex (leading `(?i)`: case-insensitive), optionally Luhn-checked. */
export const custom = (config: CustomDetectorConfig): Detector => {
  const caseInsensitive = config.pattern.startsWith('(?i)');
  const pattern = new RegExp(caseInsensitive ? config.pattern.slice(4) : config.pattern, caseInsensitive ? 'giu' : 'gu');
  const valid = config.validator === 'luhn' ? (candidate: string) => luhnValid(candidate) : () => true;
  const detector: Detector = {
    name: config.name,
    ...(config.strategy ? { strategy: config.strategy } : {}),
    gate: () => true,
    find: (text, _hints, found) => scanWith(pattern, text, found, detector, valid),
    partial: redactPartial,
    normalise: identity,
  };
  return detector;
};

/**
 * Built-ins in priority order: where two detectors claim overlapping text, the earlier wins
 * (a card number is not also a phone number; an email's digits are not a phone).
 */
export const builtInDetectors = (defaultRegion: string): ReadonlyMap<string, Detector> =>
  new Map(
    [secret(), jwt(), email(), iban(), creditCard(), usSsn(), ipv6(), ipv4(), phone(defaultRegion)].map((detector) => [detector.name, detector]),
  );
