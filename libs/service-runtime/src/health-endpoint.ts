import { createServer, type Server } from 'node:http';
import { parseAddress } from '@sluice/config';

/**
 * Environment variable naming `host:port` where a single service process (not `sluice up`, which
 * has admin.listen) answers `GET /readyz` and `GET /healthz`: what an orchestrator's probes call
 * when each service runs in its own container.
 */
export const HEALTH_LISTEN_ENV = 'SLUICE_HEALTH_LISTEN';

export interface HealthEndpoint {
  markReady(): void;
  close(): Promise<void>;
}

/**
 * `/healthz` is 200 while the process runs; `/readyz` is 503 until the service reported ready
 * (its listeners bound, its dependencies answering), then 200.
 */
export const startHealthEndpoint = async (service: string, listen: string): Promise<HealthEndpoint> => {
  const address = parseAddress(listen);
  if (!address) throw new Error(`${HEALTH_LISTEN_ENV}: expected host:port, got ${listen}`);
  let ready = false;
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' || (path !== '/readyz' && path !== '/healthz')) {
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: 'not found' }));
      return;
    }
    const ok = path === '/healthz' || ready;
    response.writeHead(ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    response.end(JSON.stringify({ service, status: ok ? 'ready' : 'not ready' }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => resolve());
  });
  return {
    markReady: () => {
      ready = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};
