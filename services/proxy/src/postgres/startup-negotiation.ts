import { TLSSocket, type SecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import { decodeStartup, encodeNegotiateProtocolVersion, FrameReader, type Frame } from '@sluice/codec-pg';
import { ProtocolMalformedError } from '@sluice/contracts';
import { MAX_TOKEN_CHARS } from '@sluice/identity';
import type { CancelKeys } from './cancel.js';
import { SocketFrames } from './frame-source.js';

export type ClientSocket = Duplex & { remoteAddress?: string; remotePort?: number };

/**
 * The most the proxy holds of what an agent sends before its login is answered: a PasswordMessage
 * with the longest token read at all (PostgreSQL reads at most 65535 bytes of one) and room for
 * messages pipelined behind it. Anyone may connect, so this bounds what a stranger can make it hold.
 */
export const PRE_LOGIN_BUFFER_LIMIT = 4 * (MAX_TOKEN_CHARS + 6);

/** What the packets before the StartupMessage need from the session. */
export interface StartupPeer {
  /** The listener's certificate: agents that ask for TLS get it. */
  readonly tls: SecureContext | undefined;
  readonly maxMessageLength: number;
  readonly cancelKeys: CancelKeys;
  /** The agent's socket is now this TLS wrapper: the session talks to it from here. */
  secured(socket: TLSSocket): void;
  /** Drops the connection without an answer (a packet that cannot be framed). */
  abandon(reason: string): void;
}

export interface NegotiatedStartup {
  /** Names and the client's bytes (see StartupMessage), `_pq_.` protocol options left out. */
  readonly parameters: ReadonlyMap<string, Buffer>;
  /** The frames of the socket the session goes on with (the TLS wrapper's after an SSLRequest). */
  readonly frames: SocketFrames;
}

/**
 * Reads startup packets until the StartupMessage. SSLRequest: 'S' and a TLS handshake when the
 * resource has a certificate, else 'N'; GSSENCRequest: always 'N' (libpq then goes on in clear).
 */
export async function negotiateStartup(client: ClientSocket, frames: SocketFrames, peer: StartupPeer): Promise<NegotiatedStartup | undefined> {
  for (;;) {
    let frame: Frame;
    try {
      frame = await frames.next();
    } catch (error) {
      if ((error as { code?: string }).code !== 'ERR_PROTOCOL_MALFORMED') throw error;
      // A packet that cannot even be framed (a client that wrote a Terminate and left, a port
      // scanner): PostgreSQL logs it and closes without a word to the client; so does the proxy.
      peer.abandon('protocol_malformed');
      return undefined;
    }
    const message = decodeStartup(frame);
    switch (message.type) {
      case 'SSLRequest':
        if (peer.tls && !(client instanceof TLSSocket)) {
          frames.detach();
          // Nothing may follow an SSLRequest before our answer: leftover bytes would be a MITM injection.
          if (frames.reader.buffered > 0) throw new ProtocolMalformedError('data after SSLRequest');
          client.write(Buffer.from('S'));
          const secure = new TLSSocket(client, { isServer: true, secureContext: peer.tls });
          peer.secured(secure);
          client = secure;
          frames = new SocketFrames(secure, new FrameReader({ phase: 'startup', maxLength: peer.maxMessageLength }), PRE_LOGIN_BUFFER_LIMIT);
          continue;
        }
        client.write(Buffer.from('N'));
        continue;
      case 'GSSENCRequest':
        client.write(Buffer.from('N'));
        continue;
      case 'CancelRequest':
        frames.detach();
        await peer.cancelKeys.cancel(message.processId, message.secretKey);
        client.destroy();
        return undefined;
      case 'StartupMessage': {
        // A newer 3.x minor or `_pq_.` protocol options: answered as the server does, by
        // NegotiateProtocolVersion down to 3.0 (decodeStartup already refused other majors).
        const options = [...message.parameters.keys()].filter((name) => name.startsWith('_pq_.'));
        if ((message.protocolVersion & 0xffff) !== 0 || options.length > 0) {
          client.write(encodeNegotiateProtocolVersion(0, options));
        }
        const parameters = new Map([...message.parameters].filter(([name]) => !name.startsWith('_pq_.')));
        return { parameters, frames };
      }
    }
  }
}
