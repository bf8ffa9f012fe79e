import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connectBus } from './connection.js';

/** A loopback port nothing listens on. */
const closedPort = async (): Promise<number> => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
};

describe('connectBus', () => {
  it('says which NATS it could not reach, and where that address is set', async () => {
    const url = `nats://127.0.0.1:${await closedPort()}`;
    await expect(connectBus(url, 'test')).rejects.toThrow(`cannot connect to NATS at ${url} (bus.url, or NATS_URL): connection refused`);
  });
});
