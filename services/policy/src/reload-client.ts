import { credentials, Metadata } from '@grpc/grpc-js';
import { policy as pb } from '@sluice/proto';

export interface ReloadAnswer {
  readonly ok: boolean;
  readonly error: string;
  readonly version: number;
}

/** Asks a running policy service to re-read its config file (`sluice policy reload`). */
export const requestPolicyReload = (address: string, timeoutMs = 5_000): Promise<ReloadAnswer> => {
  const client = new pb.PolicyServiceClient(address, credentials.createInsecure());
  return new Promise<ReloadAnswer>((resolve, reject) => {
    client.reload({}, new Metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (error, response) => {
      client.close();
      if (error) reject(error);
      else resolve({ ok: response.ok, error: response.error, version: Number(response.policyVersion) });
    });
  });
};
