import { createHmac, randomBytes } from 'node:crypto';
import type { MaskingConfig } from '@sluice/config';
import { COLUMN_COUNT_PREFIX, PROFILE_SEPARATOR, STRATEGY_STRICTNESS, type ColumnInfo, type CompiledMasking, type CompileMasking, type MaskCounts, type ProfileMasker, type Strategy } from './api.js';
import { compileColumnRule, type ColumnRule } from './column-rules.js';
import { builtInDetectors, custom, Hint, hintsOf, type Detector, type Found } from './detectors.js';
import { scanFeatures } from './features.js';
import { parseArray, serializeArray, type ArrayNode } from './pg-array.js';
import { decodeBinaryArray, decodeBinaryScalar, encodeBinaryArray } from './pg-binary.js';
import { assertJsonDepthWithin, assertJsonWalkable } from './json-depth.js';
import { spellUnicodeEscapes } from './unicode-escapes.js';
import { ARRAY_ELEMENT, TEXT_OIDS, typeKind, type TypeKind } from './pg-types.js';

const JSONB_VERSION = Buffer.from([1]);
/** Anything in a JSON text that could make the secret detector or a secret-named key match. */
const JSON_SECRET_HINT = /[_=']|-[\w-]|pass|pwd|secret|key|token|identified|A[KS]IA|-----BEGIN/i;

/** What a column rule puts in place of a whole value under the redact strategy. */
export const COLUMN_REDACTED = '[REDACTED]';
/** What a detector puts in place of the sensitive part of a value under the redact strategy. */
export const redactedText = (detector: string): string => `[REDACTED:${detector}]`;
/** Hex characters of the HMAC kept by the hash strategy (64 bits: enough to join and group on). */
const HASH_HEX_LENGTH = 16;

interface ColumnPlan {
  readonly kind: TypeKind;
  readonly elementKind: TypeKind;
  readonly rule: ColumnRule | undefined;
  readonly hints: number;
}

/** A text value that may be a JSON object or array. */
const opensLikeJson = (value: string): boolean => {
  const first = value.trimStart()[0];
  return first === '{' || first === '[';
};

const TEXT_PLAN: ColumnPlan = { kind: 'text', elementKind: 'text', rule: undefined, hints: Hint.none };

/** A bytea's text form: `\\x` hex (the default bytea_output), else the escape format's printable bytes as they are. */
const byteaTextBytes = (value: string): Buffer => (value.startsWith('\\x') ? Buffer.from(value.slice(2), 'hex') : Buffer.from(value, 'latin1'));

/** A bytea[] text form with every hex element spelled out, for a detector gate. */
const byteaArrayText = (value: string): string => value.replace(/\\\\x([0-9a-fA-F]*)/g, (_all, hex: string) => Buffer.from(hex, 'hex').toString('latin1'));

const bump = (counts: MaskCounts, key: string): void => {
  counts[key] = (counts[key] ?? 0) + 1;
};

/** Keeps the first-priority claim where detectors overlap; `found` is in priority order. */
const resolveOverlaps = (found: Found[], length: number): Found[] => {
  if (found.length === 1) return found;
  const accepted: Found[] = [];
  if (found.length <= 8) {
    for (const candidate of found) {
      if (!accepted.some((kept) => candidate.start < kept.end && kept.start < candidate.end)) accepted.push(candidate);
    }
  } else {
    const taken = new Uint8Array(length);
    for (const candidate of found) {
      let free = true;
      for (let index = candidate.start; index < candidate.end && free; index++) free = taken[index] === 0;
      if (!free) continue;
      taken.fill(1, candidate.start, candidate.end);
      accepted.push(candidate);
    }
  }
  return accepted.sort((a, b) => a.start - b.start);
};

/** What a JSON member's key means to masking (Masker.factsOfKey). */
interface KeyFacts {
  /** Name hints for the member's value (`phone`, `email`…). */
  readonly hints: number;
  /**
   * The column rule the key names, at any depth: `{"ssn": "…"}` in a json column is the same data
   * as a column named `ssn`, whatever detectors make of its value (a 9xx SSN is no valid SSN to
   * the detector). Rules match the key as a column name without a table, so a rule bound to one
   * table's column (`customers.notes`) does not reach keys.
   */
  readonly rule: ColumnRule | undefined;
  /** A detector finds something in the key itself (a map keyed by email): it is masked as a value. */
  readonly sensitive: boolean;
}

/** Keys whose facts are kept at most, and the longest key kept (longer ones are worked out each time). */
const MAX_KEPT_KEYS = 10_000;
const MAX_KEPT_KEY_CHARS = 256;

class Masker implements ProfileMasker {
  private readonly plans = new WeakMap<ColumnInfo, ColumnPlan>();
  /** What a JSON member's key means to masking, by key (see factsOfKey). */
  private readonly keyFacts = new Map<string, KeyFacts>();

  readonly columnRuleCount: number;

  constructor(
    readonly name: string,
    private readonly detectors: readonly Detector[],
    private readonly strategy: Strategy,
    private readonly rules: readonly ColumnRule[],
    private readonly hashKey: string,
  ) {
    this.columnRuleCount = rules.length;
  }

  maskCell(value: string, column: ColumnInfo | undefined, counts: MaskCounts): string | null {
    const plan = column ? this.plan(column) : TEXT_PLAN;
    switch (plan.kind) {
      case 'text':
        return this.maskTextValue(value, plan, counts);
      case 'scalar':
        return this.maskScalar(value, plan, counts);
      case 'opaque':
        if (!plan.rule) return value;
        bump(counts, `${COLUMN_COUNT_PREFIX}${plan.rule.label}`);
        return null;
      case 'bytes':
        return this.maskBytes(byteaTextBytes(value), plan, counts) ? null : value;
      case 'json':
        return this.maskJsonText(value, plan, counts);
      case 'array':
        return this.maskArray(value, plan, counts);
    }
  }

  maskBinaryCell(value: Uint8Array, column: ColumnInfo | undefined, counts: MaskCounts): Uint8Array | null {
    return this.maskBinary(value, column ? this.plan(column) : TEXT_PLAN, column?.typeOid, counts);
  }

  maskText(value: string, counts: MaskCounts): string {
    return this.maskString(value, Hint.none, counts, false) ?? '';
  }

  maskJson(value: unknown, counts: MaskCounts): unknown {
    return this.walk(value, Hint.none, counts, 0);
  }

  hasColumnRule(column: ColumnInfo): boolean {
    return this.plan(column).rule !== undefined;
  }

  /**
   * The plan of a column, cached by its ColumnInfo object: adapters build one per result column
   * (per RowDescription), so this runs once per column and result set, not per cell.
   */
  private plan(column: ColumnInfo): ColumnPlan {
    let plan = this.plans.get(column);
    if (plan) return plan;
    const kind = typeKind(column.typeOid);
    const elementOid = kind === 'array' && column.typeOid !== undefined ? ARRAY_ELEMENT.get(column.typeOid) : undefined;
    plan = {
      kind,
      elementKind: elementOid === undefined ? 'text' : typeKind(elementOid),
      rule: this.ruleOf(column),
      hints: this.hintsOfColumn(column),
    };
    this.plans.set(column, plan);
    return plan;
  }

  /**
   * The first rule matching the column itself or a column it derives from; where the value may
   * carry any column (a whole row, an unknown function), the strictest rule that could match.
   */
  private ruleOf(column: ColumnInfo): ColumnRule | undefined {
    const sources = column.derivedFrom;
    if (sources?.some((source) => source.anyColumn)) {
      const matching = this.rules.filter((rule) => rule.matches(column) || sources.some((source) => rule.matches(source)));
      return strictestRule(matching, this.strategy);
    }
    for (const rule of this.rules) {
      if (rule.matches(column)) return rule;
      if (sources) for (const source of sources) if (rule.matches(source)) return rule;
    }
    return undefined;
  }

  /** The parts a union of profiles is built from. */
  get parts(): { detectors: readonly Detector[]; strategy: Strategy; rules: readonly ColumnRule[] } {
    return { detectors: this.detectors, strategy: this.strategy, rules: this.rules };
  }

  /** Name hints of the column and of its sources: `substr(phone, 2) AS x` is still a phone number. */
  private hintsOfColumn(column: ColumnInfo): number {
    let hints = hintsOf(column.name);
    for (const source of column.derivedFrom ?? []) hints |= hintsOf(source.name);
    return hints;
  }

  /**
   * A key's hints, column rule and whether a detector finds anything in it, worked out once per
   * key: documents repeat their keys (every element of an array of records), and each key cost
   * a pass of every detector's gate at each occurrence. Detectors are pure functions of the
   * text, so a key found clean once is clean every time; a sensitive key is still masked (and
   * counted) at each occurrence.
   */
  private factsOfKey(key: string): KeyFacts {
    let facts = this.keyFacts.get(key);
    if (facts === undefined) {
      const column = { name: key };
      facts = {
        hints: hintsOf(key),
        rule: this.rules.length === 0 ? undefined : this.rules.find((rule) => rule.matches(column)),
        sensitive: this.find(key, Hint.none) !== undefined,
      };
      // JSON documents with generated keys must not grow this without bound; long keys are not kept.
      if (key.length <= MAX_KEPT_KEY_CHARS) {
        if (this.keyFacts.size >= MAX_KEPT_KEYS) this.keyFacts.clear();
        this.keyFacts.set(key, facts);
      }
    }
    return facts;
  }

  /** True when some detector's gate passes: the text may hold something to mask. */
  private mayContain(text: string, hints: number): boolean {
    const features = scanFeatures(text);
    for (const detector of this.detectors) if (detector.gate(features, text, hints)) return true;
    return false;
  }

  /**
   * mayContain for a JSON document: its quotes and colons would open the secret detector's gate
   * on every document, so that one is asked whether a secret shape or a secret-named key appears.
   */
  private mayContainJson(text: string, hints: number): boolean {
    const features = scanFeatures(text);
    for (const detector of this.detectors) {
      if (detector.name === 'secret' && hints === Hint.none) {
        if (JSON_SECRET_HINT.test(text)) return true;
      } else if (detector.gate(features, text, hints)) return true;
    }
    return false;
  }

  private find(text: string, hints: number): Found[] | undefined {
    if (text.length === 0) return undefined;
    const features = scanFeatures(text);
    let found: Found[] | undefined;
    for (const detector of this.detectors) {
      if (!detector.gate(features, text, hints)) continue;
      found ??= [];
      detector.find(text, hints, found, features);
    }
    return found && found.length > 0 ? found : undefined;
  }

  /** Masks the sensitive parts of a text; null when a part's strategy is `null` and `cell` is set. */
  private maskString(raw: string, hints: number, counts: MaskCounts, cell: boolean): string | null {
    // A value spelled with \u escapes is masked in the spelled-out text (the escapes then go too).
    const spelled = spellUnicodeEscapes(raw);
    const spelledFound = spelled === raw ? undefined : this.find(spelled, hints);
    const text = spelledFound ? spelled : raw;
    const found = spelledFound ?? this.find(raw, hints);
    if (!found) return text;
    let out = '';
    let position = 0;
    let nullify = false;
    for (const match of resolveOverlaps(found, text.length)) {
      const strategy = match.detector.strategy ?? this.strategy;
      if (strategy === 'null') nullify = true;
      out += text.slice(position, match.start) + this.render(text.slice(match.start, match.end), match.detector, strategy);
      position = match.end;
      bump(counts, match.detector.name);
    }
    if (nullify && cell) return null;
    return out + text.slice(position);
  }

  private render(value: string, detector: Detector, strategy: Strategy): string {
    switch (strategy) {
      case 'partial':
        return detector.partial(value) ?? redactedText(detector.name);
      case 'hash':
        return this.hash(detector.normalise(value));
      case 'redact':
      case 'null':
        return redactedText(detector.name);
    }
  }

  private hash(value: string): string {
    return `hash:${createHmac('sha256', this.hashKey).update(value).digest('hex').slice(0, HASH_HEX_LENGTH)}`;
  }

  /** A column rule masks the whole value with the rule's strategy (or the profile's). */
  private forceText(value: string, plan: ColumnPlan, counts: MaskCounts): string | null {
    if (value === '' || !plan.rule) return value;
    bump(counts, `${COLUMN_COUNT_PREFIX}${plan.rule.label}`);
    const strategy = plan.rule.strategy ?? this.strategy;
    switch (strategy) {
      case 'null':
        return null;
      case 'redact':
        return COLUMN_REDACTED;
      case 'hash':
        return this.hash(value);
      case 'partial': {
        // Partial needs to know what the value is: only a value that one detector claims whole
        // keeps its recognisable part; anything else is redacted.
        const trimmed = value.trim();
        const found = this.find(trimmed, plan.hints);
        const whole = found?.find((match) => match.start === 0 && match.end === trimmed.length);
        return (whole && whole.detector.partial(trimmed)) ?? COLUMN_REDACTED;
      }
    }
  }

  /** A text cell: its column rule, else detectors; a document cast to text (`profile::text`, `->>` of an object) keeps its keys, so it is walked. */
  private maskTextValue(value: string, plan: ColumnPlan, counts: MaskCounts): string | null {
    if (plan.rule) return this.forceText(value, plan, counts);
    if (this.rules.length > 0 && opensLikeJson(value)) return this.maskJsonText(value, plan, counts, (text) => this.maskArrayLiteralText(text, plan, counts));
    return this.maskString(value, plan.hints, counts, true);
  }

  /**
   * A text that opens like JSON but is not: an array literal (a COPY field of an array, `tags::text`)
   * has each element masked as a text cell, so a document in an element has its members covered by
   * key; the whole is then scanned, as any text is.
   */
  private maskArrayLiteralText(value: string, plan: ColumnPlan, counts: MaskCounts): string | null {
    const items = value.startsWith('{') ? parseArray(value) : undefined;
    let walked = value;
    if (items) {
      let changed = false;
      const maskItem = (item: ArrayNode): ArrayNode => {
        if (item === null) return null;
        if (typeof item !== 'string') return item.map(maskItem);
        const masked = this.maskTextValue(item, plan, counts);
        if (masked !== item) changed = true;
        return masked;
      };
      const masked = items.map(maskItem);
      if (changed) walked = serializeArray(masked);
    }
    return this.maskString(walked, plan.hints, counts, true);
  }

  /** bytea: true when the bytes must be withheld (a column rule, or a detector finds something in the text they spell). */
  private maskBytes(bytes: Buffer, plan: ColumnPlan, counts: MaskCounts): boolean {
    if (plan.rule) {
      bump(counts, `${COLUMN_COUNT_PREFIX}${plan.rule.label}`);
      return true;
    }
    const spelled = bytes.toString('latin1');
    return this.maskString(spelled, plan.hints, counts, true) !== spelled;
  }

  /** Numbers, inet, money…: scanned, but a masked value cannot be written in the type: NULL. */
  private maskScalar(value: string, plan: ColumnPlan, counts: MaskCounts): string | null {
    if (plan.rule) {
      bump(counts, `${COLUMN_COUNT_PREFIX}${plan.rule.label}`);
      return null;
    }
    return this.maskString(value, plan.hints, counts, true) === value ? value : null;
  }

  /** `notJson`: how a value that does not parse is masked (scanned as text unless told). */
  private maskJsonText(value: string, plan: ColumnPlan, counts: MaskCounts, notJson?: (value: string) => string | null): string | null {
    if (plan.rule) {
      const masked = this.forceText(value, plan, counts);
      return masked === null ? null : JSON.stringify(masked);
    }
    // With column rules any member's key may name one (and JSON may spell a key `\u0073sn`): parse.
    if (this.rules.length === 0 && !this.mayContainJson(value, plan.hints)) return value;
    let document: unknown;
    try {
      document = JSON.parse(value);
    } catch {
      return notJson ? notJson(value) : this.maskString(value, plan.hints, counts, true);
    }
    const local: MaskCounts = {};
    const masked = this.walk(document, plan.hints, local, 0);
    let changed = false;
    for (const key in local) {
      changed = true;
      counts[key] = (counts[key] ?? 0) + local[key]!;
    }
    // Unchanged documents go out byte for byte (jsonb's own spacing, big numbers intact).
    return changed ? JSON.stringify(masked) : value;
  }

  /** `depth`: arrays and objects above this node; past MAX_JSON_DEPTH the document is withheld, before the recursion can overflow. */
  private walk(node: unknown, hints: number, counts: MaskCounts, depth: number): unknown {
    if (typeof node === 'string') return this.maskString(node, hints, counts, true);
    if (typeof node === 'number') {
      // A card number or phone stored as a JSON number; small numbers (amounts, counts) never are.
      if (!Number.isInteger(node) || Math.abs(node) < 1_000_000 || Math.abs(node) >= 1e21) return node;
      const text = String(node);
      const masked = this.maskString(text, hints, counts, true);
      return masked === text ? node : masked;
    }
    if (node === null || typeof node !== 'object') return node;
    assertJsonDepthWithin(depth);
    if (Array.isArray(node)) return node.map((item) => this.walk(item, hints, counts, depth + 1));
    const out: Record<string, unknown> = {};
    const record = node as Record<string, unknown>;
    for (const key in record) {
      const facts = this.factsOfKey(key);
      // Keys are kept, unless a key is itself a sensitive value (a map keyed by email).
      const maskedKey = facts.sensitive ? (this.maskString(key, Hint.none, counts, false) ?? key) : key;
      out[maskedKey] = facts.rule ? this.maskCoveredMember(record[key], facts.rule, facts.hints, counts, depth + 1) : this.walk(record[key], facts.hints, counts, depth + 1);
    }
    return out;
  }

  /** A member a column rule covers is masked whole with that rule: an object or array as its text, JSON null stays null. */
  private maskCoveredMember(value: unknown, rule: ColumnRule, hints: number, counts: MaskCounts, depth: number): unknown {
    if (value === null || value === undefined) return value;
    assertJsonWalkable(value, depth);
    const plan: ColumnPlan = { kind: 'text', elementKind: 'text', rule, hints };
    return this.forceText(typeof value === 'string' ? value : JSON.stringify(value), plan, counts);
  }

  private maskBinary(value: Uint8Array, plan: ColumnPlan, oid: number | undefined, counts: MaskCounts): Uint8Array | null {
    switch (plan.kind) {
      case 'opaque':
        if (!plan.rule) return value;
        bump(counts, `${COLUMN_COUNT_PREFIX}${plan.rule.label}`);
        return null;
      case 'bytes':
        return this.maskBytes(Buffer.from(value.buffer, value.byteOffset, value.byteLength), plan, counts) ? null : value;
      case 'text': {
        const text = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
        const masked = this.maskTextValue(text, plan, counts);
        if (masked === text) return value;
        if (masked === null) return null;
        // A type we do not know whose bytes are not UTF-8 text cannot take a rewritten value.
        if (oid !== undefined && !TEXT_OIDS.has(oid) && !Buffer.from(text, 'utf8').equals(value)) return null;
        return Buffer.from(masked, 'utf8');
      }
      case 'json': {
        const jsonb = oid === 3802;
        if (jsonb && value[0] !== 1) return plan.rule || this.mayContain(Buffer.from(value).toString('latin1'), plan.hints) ? null : value;
        const text = Buffer.from(value.buffer, value.byteOffset + (jsonb ? 1 : 0), value.byteLength - (jsonb ? 1 : 0)).toString('utf8');
        const masked = this.maskJsonText(text, plan, counts);
        if (masked === text) return value;
        if (masked === null) return null;
        return jsonb ? Buffer.concat([JSONB_VERSION, Buffer.from(masked, 'utf8')]) : Buffer.from(masked, 'utf8');
      }
      case 'scalar': {
        if (plan.rule) {
          bump(counts, `${COLUMN_COUNT_PREFIX}${plan.rule.label}`);
          return null;
        }
        const text = decodeBinaryScalar(oid, value);
        if (text === undefined) return value;
        return this.maskString(text, plan.hints, counts, true) === text ? value : null;
      }
      case 'array': {
        const elementKind = plan.elementKind;
        if (elementKind === 'opaque' || elementKind === 'bytes' || (plan.rule && elementKind !== 'text')) {
          // bytea[]: a detector's gate over the bytes withholds the whole array (rare enough to be strict).
          if (!plan.rule && !(elementKind === 'bytes' && this.mayContain(Buffer.from(value).toString('latin1'), plan.hints))) return value;
          bump(counts, plan.rule ? `${COLUMN_COUNT_PREFIX}${plan.rule.label}` : 'bytes');
          return null;
        }
        const array = decodeBinaryArray(value);
        if (!array) {
          bump(counts, 'unparsed_array');
          return null;
        }
        const elementPlan: ColumnPlan = { kind: elementKind, elementKind: 'text', rule: plan.rule, hints: plan.hints };
        let changed = false;
        const elements = array.elements.map((element) => {
          if (element === null) return null;
          const masked = this.maskBinary(element, elementPlan, array.elementOid, counts);
          if (masked !== element) changed = true;
          return masked;
        });
        return changed ? encodeBinaryArray({ ...array, elements }) : value;
      }
    }
  }

  private maskArray(value: string, plan: ColumnPlan, counts: MaskCounts): string | null {
    const elementKind = plan.elementKind;
    if (elementKind === 'opaque' || elementKind === 'bytes' || (plan.rule && elementKind !== 'text')) {
      if (!plan.rule && !(elementKind === 'bytes' && this.mayContain(byteaArrayText(value), plan.hints))) return value;
      bump(counts, plan.rule ? `${COLUMN_COUNT_PREFIX}${plan.rule.label}` : 'bytes');
      return null;
    }
    // With column rules, a document in an element may hold a member a rule covers by key (`"ssn": …`),
    // which no detector's gate need open for: such an array is walked.
    const mayHoldMembers = this.rules.length > 0 && (elementKind === 'json' || elementKind === 'text') && value.includes(':');
    if (!plan.rule && !mayHoldMembers && !this.mayContain(value, plan.hints)) return value;
    const items = parseArray(value);
    if (!items) {
      // Cannot be masked element-wise: withhold rather than pass it raw.
      bump(counts, 'unparsed_array');
      return null;
    }
    const elementPlan: ColumnPlan = { kind: elementKind, elementKind: 'text', rule: plan.rule, hints: plan.hints };
    let changed = false;
    const maskItem = (item: ArrayNode): ArrayNode => {
      if (item === null) return null;
      if (typeof item !== 'string') return item.map(maskItem);
      let masked: string | null;
      if (elementKind === 'json') masked = this.maskJsonText(item, elementPlan, counts);
      else if (elementKind === 'scalar') masked = this.maskScalar(item, elementPlan, counts);
      // A text element is a text cell: its column rule, or detectors, and a document in it walked.
      else masked = this.maskTextValue(item, elementPlan, counts);
      if (masked !== item) changed = true;
      return masked;
    };
    const masked = items.map(maskItem);
    return changed ? serializeArray(masked) : value;
  }
}

const strictness = (strategy: Strategy): number => STRATEGY_STRICTNESS.indexOf(strategy);

const strictestRule = (rules: readonly ColumnRule[], fallback: Strategy): ColumnRule | undefined => {
  let best: ColumnRule | undefined;
  for (const rule of rules) {
    if (!best || strictness(rule.strategy ?? fallback) < strictness(best.strategy ?? fallback)) best = rule;
  }
  return best;
};

/**
 * The union of profiles: every detector and column rule of each, the strictest strategy, and
 * column rules ordered strictest first (each with its own profile's strategy made explicit).
 */
const unionOf = (name: string, maskers: readonly Masker[], hashKey: string): Masker => {
  const detectors = new Map<string, Detector>();
  const rules: ColumnRule[] = [];
  let strategy: Strategy = 'partial';
  for (const masker of maskers) {
    const parts = masker.parts;
    for (const detector of parts.detectors) if (!detectors.has(detector.name)) detectors.set(detector.name, detector);
    if (strictness(parts.strategy) < strictness(strategy)) strategy = parts.strategy;
    for (const rule of parts.rules) rules.push({ ...rule, strategy: rule.strategy ?? parts.strategy });
  }
  rules.sort((a, b) => strictness(a.strategy!) - strictness(b.strategy!));
  return new Masker(name, [...detectors.values()], strategy, rules, hashKey);
};

/**
 * Compiles the masking section of the config once: detectors, column rules and strategies of
 * every profile. Without a hash key, a random per-process key is used (hashes are then stable
 * only within this process).
 */
export const compileMasking: CompileMasking = (config: MaskingConfig, options): CompiledMasking => {
  const hashKey = options.hashKey ?? randomBytes(32).toString('hex');
  const builtIns = builtInDetectors(config.defaultRegion);
  const customs = config.detectors.map((detector) => custom(detector));
  // Custom detectors come first: the operator named them on purpose, they win overlaps.
  const select = (names: readonly string[]): Detector[] => {
    const wanted = new Set(names);
    return [...customs.filter((detector) => wanted.has(detector.name)), ...[...builtIns.values()].filter((detector) => wanted.has(detector.name))];
  };
  const profiles = new Map<string, Masker>(
    Object.entries(config.profiles).map(([name, profile]) => [
      name,
      new Masker(name, select(profile.detectors), profile.strategy, profile.columns.map(compileColumnRule), hashKey),
    ]),
  );
  const everything = new Masker('*', [...customs, ...builtIns.values()], 'partial', [], hashKey);
  const unions = new Map<string, Masker>();
  const profile = (name: string): ProfileMasker | undefined => {
    const named = profiles.get(name);
    if (named || !name.includes(PROFILE_SEPARATOR)) return named;
    let union = unions.get(name);
    if (!union) {
      const parts = name.split(PROFILE_SEPARATOR).map((part) => profiles.get(part));
      if (parts.some((part) => part === undefined)) return undefined;
      union = unionOf(name, parts as Masker[], hashKey);
      unions.set(name, union);
    }
    return union;
  };
  return { profile, everything };
};

/** The masking section with no profiles: what `everything` masks before any config arrived. */
export const DEFAULT_MASKING_CONFIG: MaskingConfig = { defaultRegion: 'US', detectors: [], profiles: {} };
