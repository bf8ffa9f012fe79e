// oidc-provider ships no type declarations; these are the parts the tests use.
declare module 'oidc-provider' {
  import type { IncomingMessage as Request, ServerResponse as Response } from 'node:http';

  interface GrantInstance {
    addOIDCScope(scope: string): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  }
  interface InteractionDetails {
    readonly uid: string;
    readonly prompt: { readonly name: string };
    readonly params: Record<string, unknown>;
    readonly session?: { readonly accountId: string };
  }
  interface ProviderInstance {
    callback(): (request: Request, response: Response) => void;
    interactionDetails(request: Request, response: Response): Promise<InteractionDetails>;
    interactionFinished(request: Request, response: Response, result: Record<string, unknown>, options?: { mergeWithLastSubmission?: boolean }): Promise<void>;
    readonly Grant: new (properties: { accountId: string; clientId: string }) => GrantInstance;
  }
  const Provider: new (issuer: string, configuration: Record<string, unknown>) => ProviderInstance;
  export type { ProviderInstance };
  export default Provider;
}
