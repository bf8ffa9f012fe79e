import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  encodeAuthenticationOk,
  encodeBackendKeyData,
  encodeCommandComplete,
  encodeDataRow,
  encodeErrorResponse,
  encodeReadyForQuery,
} from '@sluice/codec-pg';
import { connectUpstream } from './upstream.js';

const IDLE = 0x49;

/**
 * A target that takes any startup and answers its first `cancelled` queries as a statement_timeout
 * set at startup would (57014), the next with one row: the startup exchange as PostgreSQL speaks it.
 */
const startTarget = async (cancelled: number): Promise<{ server: Server; port: number; queries: () => number }> => {
  let queries = 0;
  const server = createServer((socket: Socket) => {
    let startup = true;
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (startup) {
          if (buffered.length < 4 || buffered.length < buffered.readUInt32BE(0)) return;
          buffered = buffered.subarray(buffered.readUInt32BE(0));
          startup = false;
          socket.write(Buffer.concat([encodeAuthenticationOk(), encodeBackendKeyData(7, 11), encodeReadyForQuery(IDLE)]));
          continue;
        }
        if (buffered.length < 5 || buffered.length < 1 + buffered.readUInt32BE(1)) return;
        buffered = buffered.subarray(1 + buffered.readUInt32BE(1));
        queries += 1;
        socket.write(
          queries <= cancelled
            ? Buffer.concat([encodeErrorResponse({ severity: 'ERROR', code: '57014', message: 'canceling statement due to statement timeout' }), encodeReadyForQuery(IDLE)])
            : Buffer.concat([encodeDataRow(['public']), encodeCommandComplete('SELECT 1'), encodeReadyForQuery(IDLE)]),
        );
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port, queries: () => queries };
};

const connect = (port: number) =>
  connectUpstream({ host: '127.0.0.1', port, ssl: false, user: 'u', password: undefined, database: 'd', parameters: [['statement_timeout', '1']], timeoutMs: 5_000, initialQuery: 'select 1' });

describe('the target connection', () => {
  const servers: Server[] = [];
  afterEach(() => {
    for (const server of servers.splice(0)) server.close();
  });

  it("sends the initial query again when the client's startup statement_timeout cancelled it, and gives up after five", async () => {
    const flaky = await startTarget(2);
    servers.push(flaky.server);
    const upstream = await connect(flaky.port);
    expect(upstream.initialRows).toEqual([['public']]);
    expect(flaky.queries()).toBe(3);
    upstream.socket.destroy();

    const stuck = await startTarget(Number.POSITIVE_INFINITY);
    servers.push(stuck.server);
    await expect(connect(stuck.port)).rejects.toMatchObject({ detail: expect.stringContaining('57014') });
    expect(stuck.queries()).toBe(5);
  });
});
