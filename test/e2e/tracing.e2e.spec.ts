import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { deleteStreams, dropDatabases } from '../support/databases.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePort } from '../support/ports.js';
import { startHttpSink, type HttpSink } from '../support/sinks.js';
import { startSluice, type RunningSluice } from '../support/sluice.js';

interface OtlpSpan {
  traceId: string;
  name: string;
}
interface OtlpExport {
  resourceSpans?: Array<{
    resource?: { attributes?: Array<{ key: string; value: { stringValue?: string } }> };
    scopeSpans?: Array<{ spans?: OtlpSpan[] }>;
  }>;
}

describe('OpenTelemetry traces when OTEL_EXPORTER_OTLP_ENDPOINT is set', () => {
  let idp: TestIssuer;
  let collector: HttpSink;
  let sluice: RunningSluice;
  let proxyPort: number;

  beforeAll(async () => {
    idp = await startTestIssuer();
    collector = await startHttpSink();
    proxyPort = await freePort();
    sluice = await startSluice(
      {
        identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
        eventStore: { url: 'postgres://postgres@127.0.0.1:5432/sluice_e2e_tracing' },
        bus: { url: 'nats://127.0.0.1:4222', stream: 'SLUICE_E2E_TRACING', subjectPrefix: 'e2etrace.events' },
        resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${proxyPort}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' } }],
        rules: [{ name: 'readers', effect: 'allow', actions: ['read'] }],
      },
      {
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
          OTEL_TRACES_EXPORTER: 'otlp',
          OTEL_METRICS_EXPORTER: 'none',
          OTEL_LOGS_EXPORTER: 'none',
          OTEL_SDK_DISABLED: 'false',
          OTEL_BSP_SCHEDULE_DELAY: '200',
        },
      },
    );
  });
  afterAll(async () => {
    await sluice?.stop();
    await Promise.all([idp?.close(), collector?.close()]);
    await dropDatabases(['sluice_e2e_tracing']);
    await deleteStreams(['SLUICE_E2E_TRACING']);
  });

  it('puts an agent command’s decision in the proxy and its gRPC handling in the policy service in one trace', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: proxyPort, user: 'a', database: 'a', password: await idp.mint({ sub: 'traced-agent' }) });
    await client.connect();
    await client.query('SELECT 42 AS traced');
    await client.end();

    const spansByService = new Map<string, OtlpSpan[]>();
    const deadline = Date.now() + 20_000;
    let shared: string | undefined;
    while (!shared && Date.now() < deadline) {
      for (const request of collector.received.filter((received) => received.url === '/v1/traces')) {
        for (const resourceSpans of (JSON.parse(request.body) as OtlpExport).resourceSpans ?? []) {
          const service = resourceSpans.resource?.attributes?.find((attribute) => attribute.key === 'service.name')?.value.stringValue ?? '?';
          const spans = (resourceSpans.scopeSpans ?? []).flatMap((scope) => scope.spans ?? []);
          spansByService.set(service, [...(spansByService.get(service) ?? []), ...spans]);
        }
      }
      const decides = (spansByService.get('sluice-proxy') ?? []).filter((span) => span.name === 'sluice.decide').map((span) => span.traceId);
      shared = (spansByService.get('sluice-policy') ?? []).find((span) => decides.includes(span.traceId))?.traceId;
      if (!shared) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(shared).toBeDefined();
  });
});
