import { describe, expect, it } from 'vitest';
import { refusalReason, refusesData, sqlStateOf } from './data-refusal.js';

/** An error as pg reports PostgreSQL's ErrorResponse. */
const refusedWith = (code: string, extra: object = {}): Error => Object.assign(new Error('refused'), { code, severity: 'ERROR', ...extra });
const systemError = (code: string): Error => Object.assign(new Error(code), { code, errno: -32, syscall: 'write' });

describe('errors about the data', () => {
  it('takes data exceptions, integrity violations and program limits as about the data', () => {
    for (const code of ['22P02', '22003', '22021', '22P05', '23514', '23502', '23P01', '54000', '54001']) expect(refusesData(refusedWith(code)), code).toBe(true);
  });

  it('retries a unique violation: a stored id or a chain head that moved, never a reason to refuse an event', () => {
    expect(refusesData(refusedWith('23505', { constraint: 'events_id_key' }))).toBe(false);
    expect(refusesData(refusedWith('23505', { constraint: 'events_session_id_session_seq_key' }))).toBe(false);
  });

  it('retries connection, serialization, resource, lock, shutdown, privilege and internal errors', () => {
    for (const code of ['08006', '08P01', '40001', '40P01', '53100', '53300', '55P03', '57014', '57P01', '57P03', '42501', '42P01', 'XX000', 'XX001', 'P0001']) {
      expect(refusesData(refusedWith(code)), code).toBe(false);
    }
  });

  it('retries what is not a PostgreSQL error at all (a socket error, a bug)', () => {
    for (const error of [new Error('boom'), systemError('ECONNRESET'), systemError('EPIPE'), undefined, null, 'text', { code: 22 }]) expect(refusesData(error)).toBe(false);
    expect(sqlStateOf(systemError('EPIPE'))).toBeUndefined();
    expect(sqlStateOf(systemError('22P02'))).toBeUndefined();
  });

  it('names the SQLSTATE and the constraint in the reason', () => {
    expect(refusalReason(refusedWith('23514', { message: 'new row for relation "events" violates check constraint "no_x"', constraint: 'no_x' }))).toBe(
      'PostgreSQL refused it: new row for relation "events" violates check constraint "no_x" [SQLSTATE 23514]',
    );
    expect(refusalReason(refusedWith('22P02', { message: 'invalid input syntax for type json', constraint: 'c' }))).toBe(
      'PostgreSQL refused it: invalid input syntax for type json (constraint c) [SQLSTATE 22P02]',
    );
  });
});
