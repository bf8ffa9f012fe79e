/**
 * `node --import @sluice/telemetry/preload …`: ESM modules (grpc-js, http, undici) are only
 * instrumented when the loader hook is registered before they load, so tracing starts here,
 * ahead of the service's own imports. `sluice up` adds this when OTEL_EXPORTER_OTLP_ENDPOINT is set.
 */
import { register } from 'node:module';

register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
const { startTracing } = await import('./tracing.js');
startTracing(process.env.SLUICE_SERVICE ?? 'sluice');
