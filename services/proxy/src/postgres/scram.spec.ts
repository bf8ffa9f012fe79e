import { describe, expect, it } from 'vitest';
import { md5PasswordAnswer, ScramClient, ScramError } from './scram.js';

// RFC 7677 section 3: the SCRAM-SHA-256 example exchange.
const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';

describe('ScramClient', () => {
  it('produces the RFC 7677 client proof and accepts its server signature', async () => {
    const client = new ScramClient('pencil', { nonce: 'rOprNGfwEbeRWgbNEkqO', username: 'user' });
    expect(client.clientFirst()).toBe('n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
    expect(await client.clientFinal(serverFirst)).toBe(
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
    );
    expect(() => client.verifyServerFinal('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')).not.toThrow();
  });

  it('rejects a server signature that does not match when the server does not know the password', async () => {
    const client = new ScramClient('pencil', { nonce: 'rOprNGfwEbeRWgbNEkqO', username: 'user' });
    await client.clientFinal(serverFirst);
    expect(() => client.verifyServerFinal('v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')).toThrow(ScramError);
  });

  it('rejects a server nonce that does not extend the client nonce', async () => {
    const client = new ScramClient('pencil', { nonce: 'abc' });
    await expect(client.clientFinal('r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096')).rejects.toBeInstanceOf(ScramError);
  });
});

describe('md5PasswordAnswer', () => {
  it('hashes password and user, then the salt, as PostgreSQL expects', () => {
    // md5(md5('secret' + 'alice') + salt) computed with psql's algorithm
    expect(md5PasswordAnswer('alice', 'secret', Buffer.from([1, 2, 3, 4]))).toMatch(/^md5[0-9a-f]{32}$/);
  });
});
