import { constantsAreInert, statementShape } from '@sluice/sql-classifier';

/** What `StatementAnswers.get` returns for a text it holds no answer about. */
export const UNKNOWN: unique symbol = Symbol('unknown');

interface ContextAnswers<V> {
  readonly byText: Map<string, V>;
  readonly byShape: Map<string, V>;
}

/**
 * Answers about statement texts, kept per context (whatever else an answer depends on: the search
 * path, the catalog's version) by exact text, or by shape (constants as `$n`) when no answer about
 * the text can depend on its constants' values, so that a new literal in every statement (pgbench
 * -S, an agent reading row after row) does not cost a parse each.
 *
 * The text is never part of a built key: a key concatenated from a new text is copied and hashed
 * whole on every lookup, and each command asks several of these caches about its text. A text (and
 * its shape, which the normaliser hands out as the same string while the text repeats) is hashed
 * once and keeps its hash.
 */
export class StatementAnswers<V> {
  readonly #contexts = new Map<string, ContextAnswers<V>>();
  #size = 0;

  /**
   * Past `maxEntries` answers every one is dropped (agents repeat a small set of statements).
   * `readsConstants`: an answer may depend on a constant's value, so it is shared by shape only
   * when the text's constants are inert (see constantsAreInert); else always.
   */
  constructor(
    private readonly maxEntries: number,
    private readonly readsConstants = true,
  ) {}

  /**
   * The answer kept for the text or for its shape. Texts of one shape differ only in constants,
   * and an answer is kept under the shape only when the text it was computed for had its
   * constants where their values cannot matter (constantsAreInert): the same places hold the
   * constants of every text of that shape.
   */
  get(context: string, text: string): V | typeof UNKNOWN {
    const answers = this.#contexts.get(context);
    if (!answers) return UNKNOWN;
    const exact = answers.byText.get(text);
    if (exact !== undefined || answers.byText.has(text)) return exact as V;
    if (answers.byShape.size === 0) return UNKNOWN;
    const shape = statementShape(text);
    if (shape === undefined) return UNKNOWN;
    const shared = answers.byShape.get(shape);
    return shared !== undefined || answers.byShape.has(shape) ? (shared as V) : UNKNOWN;
  }

  /** Keeps an answer: under the text's shape when its constants cannot change it (`shareable`, see the constructor), else under the text. */
  set(context: string, text: string, value: V, shareable = true): void {
    if (this.#size >= this.maxEntries) this.clear();
    let answers = this.#contexts.get(context);
    if (!answers) this.#contexts.set(context, (answers = { byText: new Map(), byShape: new Map() }));
    const shape = shareable ? statementShape(text) : undefined;
    if (shape !== undefined && (!this.readsConstants || constantsAreInert(text))) answers.byShape.set(shape, value);
    else answers.byText.set(text, value);
    this.#size++;
  }

  clear(): void {
    this.#contexts.clear();
    this.#size = 0;
  }
}
