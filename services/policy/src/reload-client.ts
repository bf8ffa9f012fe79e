import { credentials, Metadata, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { policy as pb } from '@sluice/proto';

export interface ReloadAnswer {
  readonly ok: boolean;
  readonly error: string;
  readonly version: number;
}

export interface ReloadOptions {
  readonly timeoutMs?: number;
  /** The deployment's mutual TLS as the `operator` peer; plain text when absent (a service embedded in a test). */
  readonly credentials?: ChannelCredentials;
  readonly channelOptions?: ChannelOptions;
}

/** Asks a running policy service to re-read its config file (`sluice policy reload`). */
export const requestPolicyReload = (address: string, options: ReloadOptions = {}): Promise<ReloadAnswer> => {
  const client = new pb.PolicyServiceClient(address, options.credentials ?? credentials.createInsecure(), options.channelOptions ?? {});
  return new Promise<ReloadAnswer>((resolve, reject) => {
    client.reload({}, new Metadata(), { deadline: new Date(Date.now() + (options.timeoutMs ?? 5_000)) }, (error, response) => {
      client.close();
      if (error) reject(error);
      else resolve({ ok: response.ok, error: response.error, version: Number(response.policyVersion) });
    });
  });
};
