import { connect } from 'node:net';
import { decodeReply, encodeCommand, RespFramer, type RespValue } from '@sluice/codec-resp';

/**
 * Raw sockets for probes a real client would never send: bytes go out exactly as written, and
 * what comes back is read without a client library's own parsing in between.
 */

/** Sends raw bytes and collects whatever comes back until the peer closes or goes quiet. */
export const rawExchange = (port: number, bytes: string) =>
  new Promise<string>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    let received = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received);
    };
    const timer = setTimeout(done, 1_500);
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.on('close', done);
    socket.on('error', done);
  });

/** A raw socket that sends bytes as they are and reads RESP replies. */
export const rawRespSocket = async (port: number) => {
  const socket = connect(port, '127.0.0.1');
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const framer = new RespFramer('reply');
  const received: RespValue[] = [];
  let closed = false;
  socket.on('data', (chunk) => {
    for (const frame of framer.push(chunk)) received.push(decodeReply(frame));
  });
  socket.on('close', () => (closed = true));
  socket.on('error', () => {});
  return {
    socket,
    get closed() {
      return closed;
    },
    write: (bytes: string | Buffer) => socket.write(bytes),
    send: (...args: string[]) => socket.write(encodeCommand(args)),
    read: async (): Promise<RespValue> => {
      const deadline = Date.now() + 5_000;
      while (received.length === 0) {
        if (Date.now() > deadline || (closed && received.length === 0)) throw new Error('no reply');
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      return received.shift()!;
    },
  };
};

export type RawRespSocket = Awaited<ReturnType<typeof rawRespSocket>>;

/** A RESP value as plain JSON-able data: strings (latin1), numbers, null, nested arrays. */
export const showResp = (value: RespValue): unknown => {
  switch (value.type) {
    case 'bulk':
    case 'verbatim':
      return value.value.toString('latin1');
    case 'simple':
    case 'error':
      return value.value;
    case 'integer':
      return Number(value.value);
    case 'null':
      return null;
    case 'array':
    case 'set':
    case 'push':
      return value.items.map(showResp);
    case 'map':
      return value.entries.map(([k, v]) => [showResp(k), showResp(v)]);
    default:
      return value.type;
  }
};
