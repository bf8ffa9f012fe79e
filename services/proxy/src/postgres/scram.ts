import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { UpstreamFailedError } from '@sluice/contracts';

const pbkdf2Async = promisify(pbkdf2);

/** The target's SCRAM exchange failed (a bad proof, a malformed message): the target failed. */
export class ScramError extends UpstreamFailedError {}

const hmac = (key: Buffer, text: string): Buffer => createHmac('sha256', key).update(text).digest();
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();

const attributes = (message: string): Map<string, string> => {
  const map = new Map<string, string>();
  for (const part of message.split(',')) {
    const eq = part.indexOf('=');
    if (eq !== 1) throw new ScramError('SCRAM: malformed server message');
    map.set(part[0]!, part.slice(2));
  }
  return map;
};

/**
 * The client side of SCRAM-SHA-256 without channel binding, as PostgreSQL speaks it.
 * @see https://www.rfc-editor.org/rfc/rfc5802 (SCRAM)
 * @see https://www.rfc-editor.org/rfc/rfc7677 (SCRAM-SHA-256)
 * @see https://www.postgresql.org/docs/current/sasl-authentication.html
 * The password is used as is (no SASLprep); PostgreSQL itself falls back to the raw bytes when a
 * password is not valid for SASLprep, and ASCII passwords are unaffected.
 */
export class ScramClient {
  static readonly mechanism = 'SCRAM-SHA-256';
  readonly #password: string;
  readonly #clientNonce: string;
  readonly #clientFirstBare: string;
  #expectedServerSignature: Buffer | undefined;

  /** PostgreSQL ignores the SCRAM user name (it uses the startup user), hence `*`. */
  constructor(password: string, options: { nonce?: string; username?: string } = {}) {
    this.#password = password;
    this.#clientNonce = options.nonce ?? randomBytes(18).toString('base64');
    this.#clientFirstBare = `n=${options.username ?? '*'},r=${this.#clientNonce}`;
  }

  /** The client-first-message (gs2 header `n,,`: no channel binding). */
  clientFirst(): string {
    return `n,,${this.#clientFirstBare}`;
  }

  /** Answers the server-first-message with the client-final-message. */
  async clientFinal(serverFirst: string): Promise<string> {
    const attrs = attributes(serverFirst);
    const nonce = attrs.get('r');
    const salt = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (!nonce || !nonce.startsWith(this.#clientNonce) || nonce.length <= this.#clientNonce.length) {
      throw new ScramError('SCRAM: server nonce does not extend the client nonce');
    }
    if (!salt || !Number.isInteger(iterations) || iterations < 1) throw new ScramError('SCRAM: bad salt or iteration count');
    const salted = await pbkdf2Async(this.#password, Buffer.from(salt, 'base64'), iterations, 32, 'sha256');
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = sha256(clientKey);
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.#clientFirstBare},${serverFirst},${withoutProof}`;
    const signature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i]! ^ signature[i]!;
    this.#expectedServerSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Checks the server-final-message: the server proves it knows the password too. */
  verifyServerFinal(serverFinal: string): void {
    const attrs = attributes(serverFinal);
    const error = attrs.get('e');
    if (error !== undefined) throw new ScramError(`SCRAM: server refused: ${error}`);
    const verifier = Buffer.from(attrs.get('v') ?? '', 'base64');
    const expected = this.#expectedServerSignature;
    if (!expected || verifier.length !== expected.length || !timingSafeEqual(verifier, expected)) {
      throw new ScramError('SCRAM: server signature does not match');
    }
  }
}

/** md5 password answer: 'md5' + md5(md5(password + user) + salt). */
export const md5PasswordAnswer = (user: string, password: string, salt: Buffer): string => {
  const inner = createHash('md5').update(password + user).digest('hex');
  return 'md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex');
};
