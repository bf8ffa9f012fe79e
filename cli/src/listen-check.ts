import { createServer } from 'node:net';
import { parseAddress, type SluiceConfig } from '@sluice/config';

export interface ListenAddress {
  /** The config key naming it, e.g. `services.masking.grpc`. */
  readonly key: string;
  readonly address: string;
}

/** Every address a `sluice up` of this config listens on, each with the key that sets it. */
export const listenAddressesOf = (config: SluiceConfig): ListenAddress[] => [
  { key: 'admin.listen', address: config.admin.listen },
  { key: 'services.policy.grpc', address: config.services.policy.grpc },
  { key: 'services.masking.grpc', address: config.services.masking.grpc },
  { key: 'services.approval.grpc', address: config.services.approval.grpc },
  { key: 'services.approval.http', address: config.services.approval.http },
  { key: 'services.audit.http', address: config.services.audit.http },
  ...config.resources.map((resource, index) => ({ key: `resources[${index}].listen`, address: resource.listen })),
];

const bindable = (host: string, port: number): Promise<NodeJS.ErrnoException | undefined> =>
  new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });

/**
 * The first configured address something else already listens on, said in one line: otherwise
 * the services start, one of them fails to bind, and the others may be talking to whatever holds
 * the port (another Sluice). Port 0 (any free port) is never taken.
 */
export const firstTakenAddress = async (config: SluiceConfig): Promise<string | undefined> => {
  for (const { key, address } of listenAddressesOf(config)) {
    const parsed = parseAddress(address);
    if (!parsed || parsed.port === 0) continue;
    const error = await bindable(parsed.host, parsed.port);
    if (error?.code === 'EADDRINUSE') return `${key}: port ${parsed.port} on ${parsed.host} is already in use (another Sluice running? change ${key})`;
    if (error?.code === 'EACCES') return `${key}: port ${parsed.port} on ${parsed.host} may not be bound by this user (change ${key})`;
  }
  return undefined;
};
