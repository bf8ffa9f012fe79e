import { createServer } from 'node:net';

// Below the ephemeral range (32768-60999 here): a port handed to a child process between our check
// and its bind can otherwise be taken as the source port of any outgoing connection on the machine.
const LOWEST = 20_000;
const HIGHEST = 32_767;
const handedOut = new Set<number>();

const bindable = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });

/** A port below the ephemeral range that nothing listens on now and this process has not handed out before. */
export const freePort = async (): Promise<number> => {
  for (let attempt = 0; attempt < 1_000; attempt += 1) {
    const port = LOWEST + Math.floor(Math.random() * (HIGHEST - LOWEST + 1));
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port between ${LOWEST} and ${HIGHEST}`);
};

export const freePorts = async (count: number): Promise<number[]> => {
  const ports: number[] = [];
  while (ports.length < count) ports.push(await freePort());
  return ports;
};
