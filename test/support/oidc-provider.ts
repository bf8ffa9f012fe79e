import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

/** The resource indicator agents ask tokens for; its tokens carry `aud` = the Sluice audience. */
const RESOURCE = 'urn:sluice:gateway';

export interface ClientSpec {
  readonly clientId: string;
  readonly secret: string;
  readonly groups: readonly string[];
}

export interface RealIdp {
  readonly issuer: string;
  /** A client-credentials access token (JWT) for the client, for the `sluice` audience. */
  token(clientId: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * panva/node-oidc-provider as the agents' IdP: clients use the client-credentials grant and get
 * JWT access tokens for the resource `audience` (resource indicators), with a groups claim.
 */
export const startOidcProvider = async (clients: readonly ClientSpec[], audience = 'sluice'): Promise<RealIdp> => {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'idp-es256', alg: 'ES256', use: 'sig' };
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const groupsOf = new Map(clients.map((client) => [client.clientId, client.groups]));
  const provider = new Provider(issuer, {
    jwks: { keys: [jwk] },
    clients: clients.map((client) => ({
      client_id: client.clientId,
      client_secret: client.secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'ES256',
    })),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({ scope: '', audience, accessTokenTTL: 600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } }),
      },
    },
    ttl: { ClientCredentials: 600 },
    extraTokenClaims: (_ctx: unknown, token: unknown) => {
      const clientId = (token as { clientId?: string }).clientId;
      return { groups: [...(groupsOf.get(clientId ?? '') ?? [])] };
    },
  });
  server.on('request', provider.callback());
  return {
    issuer,
    async token(clientId) {
      const client = clients.find((candidate) => candidate.clientId === clientId);
      if (!client) throw new Error(`unknown client ${clientId}`);
      const response = await fetch(`${issuer}/token`, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: client.secret, resource: RESOURCE }),
      });
      const body = (await response.json()) as { access_token?: string; error?: string; error_description?: string };
      if (!body.access_token) throw new Error(`token request failed: ${body.error}: ${body.error_description}`);
      return body.access_token;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};
