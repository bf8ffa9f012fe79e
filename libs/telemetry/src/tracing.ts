import { NodeSDK } from '@opentelemetry/sdk-node';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';

export interface Tracing {
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry Node SDK so one agent command is one trace across proxy -> policy ->
 * masking -> target. Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: with no exporter the SDK
 * would try 127.0.0.1:4318 on every span batch.
 */
let started: Tracing | undefined;

export const startTracing = (service: string): Tracing => {
  if (started) return started;
  if (!process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_SDK_DISABLED === 'true') {
    return { shutdown: async () => {} };
  }
  const sdk = new NodeSDK({
    serviceName: `sluice-${service}`,
    instrumentations: [new GrpcInstrumentation(), new HttpInstrumentation(), new UndiciInstrumentation()],
  });
  sdk.start();
  started = { shutdown: () => sdk.shutdown() };
  return started;
};
