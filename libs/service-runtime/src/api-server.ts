import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import { ConfigInvalidError } from '@sluice/contracts';
import { readSecret, type ApiTlsConfig } from '@sluice/config';

/** PEM certificate chain and private key an HTTP API serves TLS with. */
export interface ApiTlsMaterial {
  readonly cert: string;
  readonly key: string;
}

/**
 * Reads an API's `tls` setting (`services.approval.tls`, …) now. A secret that cannot be read, or
 * PEM that is not a certificate and its matching key, is a config error naming `configKey`: the
 * API must not quietly fall back to plain HTTP.
 */
export const readApiTls = (setting: ApiTlsConfig | undefined, baseDir: string, configKey: string): ApiTlsMaterial | undefined => {
  if (setting === undefined) return undefined;
  const cert = readSecret(setting.cert, baseDir);
  if (cert === undefined) throw new ConfigInvalidError(`${configKey}.cert`, `a readable PEM certificate (${describeRef(setting.cert)})`);
  const key = readSecret(setting.key, baseDir);
  if (key === undefined) throw new ConfigInvalidError(`${configKey}.key`, `a readable PEM private key (${describeRef(setting.key)})`);
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigInvalidError(configKey, `a PEM certificate and its private key (${(error as Error).message})`);
  }
  return { cert, key };
};

const describeRef = (ref: ApiTlsConfig['cert']): string => ('env' in ref ? `environment variable ${ref.env} is not set` : `file ${ref.file} cannot be read`);

/** An HTTPS server when the API has TLS material (then it serves HTTPS only), else plain HTTP. */
export const createApiServer = (tls: ApiTlsMaterial | undefined, handler: RequestListener): Server =>
  tls === undefined ? createHttpServer(handler) : createHttpsServer({ cert: tls.cert, key: tls.key }, handler);
