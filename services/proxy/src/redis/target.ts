import { connect, type Socket } from 'node:net';
import { encodeCommand, type RespFramer } from '@sluice/codec-resp';
import { readSecret, type RedisResourceConfig } from '@sluice/config';
import { UpstreamFailedError } from '@sluice/contracts';
import type { HelloArgs } from './commands.js';

/** The handshake with the target: the resource's own credentials, its database, the agent's protocol. */
const handshakeOf = (resource: RedisResourceConfig, secretsDir: string, hello: HelloArgs | undefined): Buffer[] => {
  const handshake: Buffer[] = [];
  const password = readSecret(resource.credentials.password, secretsDir);
  if (password !== undefined) {
    handshake.push(encodeCommand(resource.credentials.username ? ['AUTH', resource.credentials.username, password] : ['AUTH', password]));
  }
  if (resource.target.db !== 0) handshake.push(encodeCommand(['SELECT', String(resource.target.db)]));
  if (hello?.protocol) {
    handshake.push(encodeCommand(['HELLO', String(hello.protocol), ...(hello.setName ? ['SETNAME', hello.setName] : [])]));
  }
  return handshake;
};

/**
 * Opens and authenticates one upstream connection. `opened` gets the socket at once, so a client
 * that leaves during the handshake can close it. Resolves to the socket and HELLO's reply (when
 * the agent asked for a protocol); throws UpstreamFailedError, never the target's own error text
 * (it may echo credentials).
 */
export const connectTarget = async (
  resource: RedisResourceConfig,
  options: { readonly secretsDir: string; readonly connectTimeoutMs?: number },
  hello: HelloArgs | undefined,
  framer: RespFramer,
  opened: (socket: Socket) => void,
): Promise<{ readonly socket: Socket; readonly helloReply: Buffer | undefined }> => {
  const upstream = connect({ host: resource.target.host, port: resource.target.port });
  upstream.setNoDelay(true);
  opened(upstream);
  const handshake = handshakeOf(resource, options.secretsDir, hello);
  const replies = await new Promise<Buffer[]>((resolve, reject) => {
    const timer = setTimeout(() => fail(new UpstreamFailedError('timed out')), options.connectTimeoutMs ?? 5_000);
    const received: Buffer[] = [];
    const settle = () => {
      clearTimeout(timer);
      upstream.removeAllListeners('data');
      upstream.removeAllListeners('error');
      upstream.removeAllListeners('close');
    };
    const fail = (error: Error) => {
      settle();
      upstream.destroy();
      reject(error);
    };
    upstream.once('error', (error) => fail(new UpstreamFailedError(`the target cannot be reached: ${error.message}`, { cause: error })));
    upstream.once('close', () => fail(new UpstreamFailedError('connection closed')));
    upstream.on('data', (chunk: Buffer) => {
      try {
        received.push(...framer.push(chunk));
      } catch (error) {
        return fail(new UpstreamFailedError('the target sent a malformed reply', { cause: error }));
      }
      if (received.length >= handshake.length) {
        settle();
        resolve(received);
      }
    });
    upstream.once('connect', () => {
      if (handshake.length === 0) {
        settle();
        resolve([]);
      } else upstream.write(Buffer.concat(handshake));
    });
  });
  for (const reply of replies) {
    // Upstream error text may echo credentials: report only that it refused.
    if (reply[0] === 0x2d || reply[0] === 0x21) throw new UpstreamFailedError('the target refused the handshake');
  }
  return { socket: upstream, helloReply: hello?.protocol ? replies[handshake.length - 1] : undefined };
};
