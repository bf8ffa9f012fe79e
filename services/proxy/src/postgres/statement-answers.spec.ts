import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { StatementAnswers, UNKNOWN } from './statement-answers.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

describe('StatementAnswers', () => {
  it('answers another literal of a shape whose constants are inert, within the same context only', () => {
    const answers = new StatementAnswers<string>(16);
    answers.set('public', 'SELECT abalance FROM pgbench_accounts WHERE aid = 1', 'answer');
    expect(answers.get('public', 'SELECT abalance FROM pgbench_accounts WHERE aid = 2')).toBe('answer');
    expect(answers.get('crm', 'SELECT abalance FROM pgbench_accounts WHERE aid = 2')).toBe(UNKNOWN);
  });

  it('keeps an answer that may read a constant under its exact text only', () => {
    const answers = new StatementAnswers<string>(16);
    // A constant that is a function's argument may change what the statement reads.
    answers.set('', "SELECT current_setting('search_path')", 'answer');
    expect(answers.get('', "SELECT current_setting('search_path')")).toBe('answer');
    expect(answers.get('', "SELECT current_setting('role')")).toBe(UNKNOWN);
  });

  it('shares by shape regardless of where the constants are when answers never read one', () => {
    const answers = new StatementAnswers<string>(16, false);
    answers.set('', "SELECT current_setting('search_path')", 'answer');
    expect(answers.get('', "SELECT current_setting('role')")).toBe('answer');
  });

  it('keeps an answer that is not to be shared under its exact text', () => {
    const answers = new StatementAnswers<boolean>(16);
    answers.set('', 'SELECT abalance FROM pgbench_accounts WHERE aid = 1', false, false);
    expect(answers.get('', 'SELECT abalance FROM pgbench_accounts WHERE aid = 1')).toBe(false);
    expect(answers.get('', 'SELECT abalance FROM pgbench_accounts WHERE aid = 2')).toBe(UNKNOWN);
  });

  it('tells a kept null or false answer from none', () => {
    const answers = new StatementAnswers<string | null>(16);
    answers.set('', 'SELECT 1 FROM t WHERE id = 1', null);
    expect(answers.get('', 'SELECT 1 FROM t WHERE id = 5')).toBeNull();
    expect(answers.get('', 'SELECT 2')).toBe(UNKNOWN);
  });

  it('drops every answer once it holds its limit', () => {
    const answers = new StatementAnswers<number>(2);
    answers.set('', 'SELECT a FROM t', 1);
    answers.set('', 'SELECT b FROM t', 2);
    answers.set('', 'SELECT c FROM t', 3);
    expect(answers.get('', 'SELECT a FROM t')).toBe(UNKNOWN);
    expect(answers.get('', 'SELECT c FROM t')).toBe(3);
  });
});
