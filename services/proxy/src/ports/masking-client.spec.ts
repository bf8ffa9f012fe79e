import { afterEach, describe, expect, it } from 'vitest';
import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { masking } from '@sluice/proto';
import { createLogger } from '@sluice/service-runtime';
import { encodeMaskingSnapshot } from '@sluice/masking-engine';
import { createMaskingPort, type MaskingClientPort } from './masking-client.js';
import { codeOf, eventually } from '../../../../test/support/expectations.js';

type WatchCall = ServerWritableStream<masking.WatchProfilesRequest, masking.WatchProfilesResponse>;

const logger = createLogger('masking-client-spec');
const snapshot = (strategy: 'partial' | 'redact'): string =>
  encodeMaskingSnapshot({
    config: { defaultRegion: 'US', detectors: [], profiles: { pii: { detectors: ['email'], strategy, columns: [] } } },
    hashKey: 'k',
  });

/** A stand-in MaskingService whose watch streams the test drives by hand. */
const startFakeService = async (): Promise<{ address: string; watchers: WatchCall[]; stop(): void }> => {
  const watchers: WatchCall[] = [];
  const server = new Server();
  server.addService(masking.MaskingServiceService, {
    watchProfiles: (call: WatchCall) => {
      watchers.push(call);
    },
    maskValues: (_call, callback) => callback(null, { values: [], maskedCounts: {} }),
  } satisfies masking.MaskingServiceServer);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return { address: `127.0.0.1:${port}`, watchers, stop: () => server.forceShutdown() };
};


describe('createMaskingPort', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const step of cleanup.splice(0).reverse()) step();
  });

  const open = async (): Promise<{ port: MaskingClientPort; fake: Awaited<ReturnType<typeof startFakeService>> }> => {
    const fake = await startFakeService();
    cleanup.push(fake.stop);
    const port = createMaskingPort(fake.address, { logger, initialBackoffMs: 10, maxBackoffMs: 50 });
    cleanup.push(() => port.close());
    await eventually(() => expect(fake.watchers.length).toBe(1));
    return { port, fake };
  };

  it('is unavailable while the stream is open but no version has arrived', async () => {
    const { port } = await open();
    expect(codeOf(() => port.masker('pii'))).toBe('ERR_MASKING_UNAVAILABLE');
    expect(port.live).toBe(false);
  });

  it('becomes ready with the first version and follows later ones', async () => {
    const { port, fake } = await open();
    fake.watchers[0]!.write({ maskingConfigJson: snapshot('partial'), version: 1n });
    await port.ready;
    expect(port.masker('pii')!.maskText('a@b.io', {})).toBe('a***@b.io');
    fake.watchers[0]!.write({ maskingConfigJson: snapshot('redact'), version: 2n });
    await eventually(() => expect(port.version).toBe(2n));
    expect(port.masker('pii')!.maskText('a@b.io', {})).toBe('[REDACTED:email]');
  });

  it('keeps the previous version when a new one does not compile', async () => {
    const { port, fake } = await open();
    fake.watchers[0]!.write({ maskingConfigJson: snapshot('partial'), version: 1n });
    await port.ready;
    fake.watchers[0]!.write({ maskingConfigJson: '{"not":"a masking config"}', version: 2n });
    fake.watchers[0]!.write({ maskingConfigJson: snapshot('partial'), version: 3n });
    await eventually(() => expect(port.version).toBe(3n));
    expect(port.masker('pii')!.maskText('a@b.io', {})).toBe('a***@b.io');
  });

  it('stays unavailable when the only version it got does not compile', async () => {
    const { port, fake } = await open();
    fake.watchers[0]!.write({ maskingConfigJson: 'not json', version: 1n });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(codeOf(() => port.masker('pii'))).toBe('ERR_MASKING_UNAVAILABLE');
  });

  it('fails closed when the stream ends and reconnects to receive the profiles again', async () => {
    const { port, fake } = await open();
    fake.watchers[0]!.write({ maskingConfigJson: snapshot('partial'), version: 1n });
    await port.ready;
    fake.watchers[0]!.end();
    await eventually(() => expect(codeOf(() => port.masker('pii'))).toBe('ERR_MASKING_UNAVAILABLE'));
    await eventually(() => expect(fake.watchers.length).toBe(2));
    fake.watchers[1]!.write({ maskingConfigJson: snapshot('partial'), version: 1n });
    await eventually(() => expect(port.live).toBe(true));
    expect(port.masker('pii')!.maskText('a@b.io', {})).toBe('a***@b.io');
  });
});
