import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentials } from '@grpc/grpc-js';
import { loadConfig } from '@sluice/config';
import { masking } from '@sluice/proto';
import { createLogger } from '@sluice/service-runtime';
import { startMaskingService, type RunningMaskingService } from '@sluice/masking';
import { createMaskingPort, type MaskingClientPort } from '../services/proxy/src/ports/masking-client.js';
import { codeOf, eventually } from './support/expectations.js';

const logger = createLogger('masking-int-test');
const keyEnv = `SLUICE_TEST_MASKING_KEY_${randomBytes(4).toString('hex')}`;
process.env[keyEnv] = 'integration-hash-key';

const configYaml = (strategy: string): string => `
masking:
  hashKey: { env: ${keyEnv} }
  profiles:
    pii:
      detectors: [credit_card, email, phone, us_ssn, iban, ipv4, jwt, secret]
      strategy: ${strategy}
      columns:
        - { match: "(?i)ssn|social_security", strategy: redact }
    hashed:
      detectors: [email]
      strategy: hash
`;


const maskValues = (address: string, request: masking.MaskValuesRequest): Promise<masking.MaskValuesResponse> => {
  const client = new masking.MaskingServiceClient(address, credentials.createInsecure());
  return new Promise((resolve, reject) =>
    client.maskValues(request, (error, response) => {
      client.close();
      if (error) reject(error);
      else resolve(response);
    }),
  );
};

describe('masking service and the proxy masking port over real gRPC', () => {
  let dir: string;
  let file: string;
  let service: RunningMaskingService | undefined;
  let port: MaskingClientPort;
  let address: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-masking-'));
    file = join(dir, 'sluice.yaml');
    writeFileSync(file, configYaml('partial'));
    service = await startMaskingService({ loaded: loadConfig(file), logger, listen: '127.0.0.1:0' });
    address = service.address;
    port = createMaskingPort(address, { logger, initialBackoffMs: 20, maxBackoffMs: 100 });
    await port.ready;
  });

  afterAll(async () => {
    port?.close();
    await service?.stop();
    rmSync(dir, { recursive: true, force: true });
    delete process.env[keyEnv];
  });

  it('masks cells in-process with the profiles the service streamed', () => {
    const pii = port.masker('pii')!;
    const counts = {};
    expect(pii.maskCell('ann@example.com', { name: 'email' }, counts)).toBe('a***@example.com');
    expect(pii.maskCell('123-45-6789', { name: 'ssn' }, counts)).toBe('[REDACTED]');
    expect(pii.maskCell('Ann', { name: 'name' }, counts)).toBe('Ann');
    expect(counts).toEqual({ email: 1, 'column:(?i)ssn|social_security': 1 });
    expect(port.live).toBe(true);
    expect(port.version).toBe(1n);
  });

  it('returns no masker for no profile, and refuses a profile the service does not know', () => {
    expect(port.masker(undefined)).toBeUndefined();
    expect(codeOf(() => port.masker('nope'))).toBe('ERR_MASKING_UNAVAILABLE');
  });

  it('hashes with the configured key, alike in the proxy and in MaskValues', async () => {
    const inProxy = port.masker('hashed')!.maskCell('ann@example.com', { name: 'email' }, {});
    const response = await maskValues(address, { profile: 'hashed', columnNames: ['email', 'note'], values: [{ value: 'ann@example.com' }, {}] });
    expect(inProxy).toMatch(/^hash:[0-9a-f]{16}$/);
    expect(response.values).toEqual([{ value: inProxy }, {}]);
    expect(response.maskedCounts).toEqual({ email: 1 });
  });

  it('answers MaskValues for an unknown profile with NOT_FOUND', async () => {
    await expect(maskValues(address, { profile: 'nope', columnNames: ['a'], values: [{ value: 'x' }] })).rejects.toMatchObject({ code: 5 });
  });

  it('streams a new version after a reload, and keeps it when the next file is invalid', async () => {
    writeFileSync(file, configYaml('redact'));
    await service!.reload();
    await eventually(() => expect(port.masker('pii')!.maskCell('ann@example.com', { name: 'email' }, {})).toBe('[REDACTED:email]'));
    expect(port.version).toBe(2n);

    writeFileSync(file, configYaml('sideways'));
    await expect(service!.reload()).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' });
    expect(service!.version).toBe(2n);
    expect(port.masker('pii')!.maskCell('ann@example.com', { name: 'email' }, {})).toBe('[REDACTED:email]');
  });

  it('throws ERR_MASKING_UNAVAILABLE once the service stops, still masks command texts, and recovers when it is back', async () => {
    await service!.stop();
    service = undefined;
    await eventually(() => expect(codeOf(() => port.masker('pii'))).toBe('ERR_MASKING_UNAVAILABLE'));
    expect(port.live).toBe(false);
    expect(port.masker(undefined)).toBeUndefined();
    expect(port.maskCommandText("SELECT 1 WHERE email = 'ann@example.com'", 'pii')).toBe("SELECT 1 WHERE email = '[REDACTED:email]'");

    writeFileSync(file, configYaml('partial'));
    service = await startMaskingService({ loaded: loadConfig(file), logger, listen: address });
    await eventually(() => expect(port.masker('pii')!.maskCell('ann@example.com', { name: 'email' }, {})).toBe('a***@example.com'));
    expect(port.live).toBe(true);
  });

  it('masks command texts with every detector when the profile does not cover a value', () => {
    expect(port.maskCommandText("UPDATE t SET card = '4111111111111111' WHERE ip = '10.1.2.3'", 'hashed')).toBe(
      "UPDATE t SET card = '************1111' WHERE ip = '[REDACTED:ipv4]'",
    );
  });
});

describe('masking port with no masking service reachable', () => {
  it('withholds results but masks command texts with the built-in detectors', () => {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    const port = createMaskingPort('127.0.0.1:1', { logger, initialBackoffMs: 50, maxBackoffMs: 100 });
    try {
      expect(codeOf(() => port.masker('pii'))).toBe('ERR_MASKING_UNAVAILABLE');
      expect(port.maskCommandText('GET /users?email=ann@example.com', undefined)).toBe('GET /users?email=a***@example.com');
    } finally {
      port.close();
    }
  });
});
