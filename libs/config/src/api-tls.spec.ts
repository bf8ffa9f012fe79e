import { describe, expect, it } from 'vitest';
import { ConfigInvalidError } from '@sluice/contracts';
import { parseConfig } from './load.js';
import { apiBaseUrl } from './schema.js';

const pair = { cert: { file: 'tls/api.crt' }, key: { env: 'API_TLS_KEY' } };
const consoleSettings = { oidc: { clientId: 'sluice-console' } };

const refusal = (document: unknown): ConfigInvalidError => {
  try {
    parseConfig(document);
  } catch (error) {
    if (error instanceof ConfigInvalidError) return error;
    throw error;
  }
  throw new Error('the config was accepted');
};

describe('services.{approval,audit,console}.tls in the config', () => {
  it('is absent unless set, and takes a certificate and a key as secret references', () => {
    const plain = parseConfig({ services: { console: consoleSettings } });
    expect(plain.services.approval.tls).toBeUndefined();
    expect(plain.services.audit.tls).toBeUndefined();
    expect(plain.services.console!.tls).toBeUndefined();
    const services = parseConfig({ services: { approval: { tls: pair }, audit: { tls: pair }, console: { ...consoleSettings, tls: pair } } }).services;
    expect(services.approval.tls).toEqual(pair);
    expect(services.audit.tls).toEqual(pair);
    expect(services.console!.tls).toEqual(pair);
  });

  it('refuses a literal certificate, a missing key or an unknown field, naming the key', () => {
    expect(refusal({ services: { approval: { tls: { cert: '-----BEGIN CERTIFICATE-----', key: pair.key } } } })).toMatchObject({ path: 'services.approval.tls.cert' });
    expect(refusal({ services: { approval: { tls: { cert: '-----BEGIN CERTIFICATE-----', key: pair.key } } } }).message).toMatch(/never a literal value/);
    expect(refusal({ services: { audit: { tls: { cert: pair.cert } } } })).toMatchObject({ path: 'services.audit.tls.key' });
    expect(refusal({ services: { console: { ...consoleSettings, tls: { ...pair, ca: pair.cert } } } })).toMatchObject({ path: 'services.console.tls.ca' });
  });

  it('makes clients of the approval and audit APIs use https when the API has tls', () => {
    const services = parseConfig({ services: { approval: { http: '127.0.0.1:7180', tls: pair } } }).services;
    expect(apiBaseUrl(services.approval)).toBe('https://127.0.0.1:7180');
    expect(apiBaseUrl(services.audit)).toBe('http://127.0.0.1:7190');
  });
});
