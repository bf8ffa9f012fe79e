import { createServer as createHttpServer, request as httpRequest, type Agent, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HttpResourceConfig, RuleConfig } from '@sluice/config';
import type { CompiledMasking } from '@sluice/masking-engine';
import { ConnectionLimiter } from '../../services/proxy/src/connection-limits.js';
import { createHttpAdapter, type HttpAdapterOptions } from '../../services/proxy/src/http/adapter.js';
import { createEnginePorts, listenOnLoopback, type RecordedEvent } from './engine-ports.js';
import { startTestIssuer } from './oidc.js';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface CallOptions {
  method?: string;
  token?: string;
  body?: string;
  headers?: Record<string, string>;
  agent?: Agent;
}

/** One request through node:http, which keeps the path exactly as given (fetch would normalise `..` itself). */
export const call = (port: number, path: string, options: CallOptions = {}) =>
  new Promise<Reply>((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        ...(options.agent ? { agent: options.agent } : {}),
        headers: { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });

/** A request as the target saw it. */
export interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  trailers: NodeJS.Dict<string>;
}

/**
 * Answers a request the spec's target knows and returns the response it ended; undefined leaves
 * the request to the recording target's own answers.
 */
export type TargetRoutes = (req: IncomingMessage, res: ServerResponse) => ServerResponse | undefined;

/**
 * A real HTTP target on port 0 that records every request it sees (and every request it refused
 * to parse). It answers `/headers` with a redirect whose headers carry PII, the spec's own routes,
 * and anything else with `<method> <url>` as text.
 */
export const startRecordingTarget = async (routes: TargetRoutes = () => undefined) => {
  const seen: Seen[] = [];
  const errors: string[] = [];
  const server = createHttpServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, trailers: {} });
    req.on('end', () => (seen.at(-1)!.trailers = req.trailers));
    req.resume();
    req.on('end', () => {
      if (routes(req, res)) return;
      if (req.url === '/headers') {
        res.writeHead(302, {
          'content-type': 'text/plain',
          location: '/users/alice@example.com',
          'x-user-email': 'alice@example.com',
          'x-user-ssn': 'ZQ-NOT-A-FORMAT',
          'x-trace': 'plain-trace-id',
        });
        return res.end('moved');
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${req.method} ${req.url}`);
    });
  });
  server.on('clientError', (error: Error & { code?: string }, socket) => {
    errors.push(error.code ?? error.message);
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, seen, errors, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
};

export type RecordingTarget = Awaited<ReturnType<typeof startRecordingTarget>>;

export interface HttpFrontDoorOptions {
  readonly rules: RuleConfig[];
  readonly masking: CompiledMasking;
  readonly recorded?: RecordedEvent[];
  readonly routes?: TargetRoutes;
  /** The target credentials the proxy adds (none by default). */
  readonly credentials?: HttpResourceConfig['credentials'];
  readonly adapterOptions?: Omit<HttpAdapterOptions, 'secretsDir'>;
  /** Connection limits, enforced as the proxy does (none by default). */
  readonly limits?: { readonly maxConnections: number; readonly maxConnectionsPerSubject: number };
}

/**
 * The HTTP adapter for `billing-api` on a loopback port in front of a recording target, with the
 * real policy and masking engines and a real token issuer: what the HTTP red-team specs probe.
 */
export const startHttpFrontDoor = async ({ rules, masking, recorded, routes, credentials, adapterOptions, limits }: HttpFrontDoorOptions) => {
  const idp = await startTestIssuer();
  const target = await startRecordingTarget(routes);
  const resource = {
    name: 'billing-api',
    type: 'http',
    listen: '127.0.0.1:0',
    target: { url: target.url },
    credentials: credentials ?? { headers: {} },
    ...(limits ? { limits } : {}),
  } as HttpResourceConfig;
  const engine = createEnginePorts({ idp, rules, resource, masking, maxRecordedBytes: 4096, ...(recorded ? { recorded } : {}) });
  const ports = limits ? { ...engine, connectionLimits: new Map([[resource.name, new ConnectionLimiter(limits)]]) } : engine;
  const adapter = createHttpAdapter(resource, { secretsDir: process.cwd(), ...adapterOptions });
  const { server: listener, port } = await listenOnLoopback(adapter, ports);
  return {
    idp,
    target,
    port,
    close: async (): Promise<void> => {
      await adapter.close();
      listener.close();
      target.server.close();
      await idp.close();
    },
  };
};

export type HttpFrontDoor = Awaited<ReturnType<typeof startHttpFrontDoor>>;

/** Forgets what the target saw, so each test starts from nothing. */
export const forgetTargetTraffic = (target: RecordingTarget): void => {
  target.seen.length = 0;
  target.errors.length = 0;
};
