import type { AddressInfo } from 'node:net';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { generateKeyPair, exportJWK } from 'jose';
import Provider, { type ProviderInstance } from 'oidc-provider';

/** The resource indicator agents ask tokens for; its tokens carry `aud` = the Sluice audience. */
const RESOURCE = 'urn:sluice:gateway';

export interface ClientSpec {
  readonly clientId: string;
  readonly secret: string;
  readonly groups: readonly string[];
}

/** A web client for people (the console): authorization code with PKCE, signed in on a small form. */
export interface PeopleClientSpec {
  readonly clientId: string;
  readonly secret: string;
  readonly redirectUri: string;
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
export const startOidcProvider = async (clients: readonly ClientSpec[], audience = 'sluice', people?: PeopleClientSpec): Promise<RealIdp> => {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'idp-es256', alg: 'ES256', use: 'sig' };
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const groupsOf = new Map(clients.map((client) => [client.clientId, client.groups]));
  /** People's groups as they typed them on the sign-in form, by account id (the user name). */
  const groupsOfPerson = new Map<string, readonly string[]>();
  const provider = new Provider(issuer, {
    jwks: { keys: [jwk] },
    clients: clients.map((client) => ({
      client_id: client.clientId,
      client_secret: client.secret,
      grant_types: ['client_credentials'],
      redirect_uris: [] as string[],
      response_types: [] as string[],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'ES256',
    })).concat(
      people
        ? [
            {
              client_id: people.clientId,
              client_secret: people.secret,
              grant_types: ['authorization_code'],
              redirect_uris: [people.redirectUri],
              response_types: ['code'],
              token_endpoint_auth_method: 'client_secret_basic',
              id_token_signed_response_alg: 'ES256',
            },
          ]
        : [],
    ),
    findAccount: (_ctx: unknown, id: string) => ({ accountId: id, claims: () => ({ sub: id }) }),
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['test-cookie-key-not-secret'] },
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
      const { clientId, accountId } = token as { clientId?: string; accountId?: string };
      if (accountId !== undefined) return { groups: [...(groupsOfPerson.get(accountId) ?? [])] };
      return { groups: [...(groupsOf.get(clientId ?? '') ?? [])] };
    },
  });
  const callback = provider.callback();
  server.on('request', (request, response) => {
    if (!request.url?.startsWith('/interaction/')) return callback(request, response);
    void personInteraction(provider, request, response, groupsOfPerson).catch((error: unknown) => {
      response.writeHead(500, { 'content-type': 'text/plain' });
      response.end(String(error));
    });
  });
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

const escapeText = (value: string): string => value.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);

/**
 * The IdP's login step for people: a form asking a user name and groups (it is a test IdP),
 * then consent granted for OpenID and the Sluice resource without asking.
 */
const personInteraction = async (
  provider: ProviderInstance,
  request: IncomingMessage,
  response: ServerResponse,
  groupsOfPerson: Map<string, readonly string[]>,
): Promise<void> => {
  const details = await provider.interactionDetails(request, response);
  if (details.prompt.name === 'login') {
    if (request.method !== 'POST') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      response.end(`<!doctype html><title>Test IdP</title><form method="post" action="/interaction/${escapeText(details.uid)}">
<label>User name <input name="username"></label> <label>Groups <input name="groups"></label> <button type="submit">Sign in</button></form>`);
      return;
    }
    let body = '';
    for await (const chunk of request) body += (chunk as Buffer).toString('utf8');
    const form = new URLSearchParams(body);
    const username = form.get('username') ?? '';
    groupsOfPerson.set(username, (form.get('groups') ?? '').split(',').map((group) => group.trim()).filter(Boolean));
    await provider.interactionFinished(request, response, { login: { accountId: username } }, { mergeWithLastSubmission: false });
    return;
  }
  const grant = new provider.Grant({ accountId: details.session!.accountId, clientId: details.params.client_id as string });
  grant.addOIDCScope('openid');
  if (typeof details.params.resource === 'string') grant.addResourceScope(details.params.resource, '');
  const grantId = await grant.save();
  await provider.interactionFinished(request, response, { consent: { grantId } }, { mergeWithLastSubmission: true });
};
