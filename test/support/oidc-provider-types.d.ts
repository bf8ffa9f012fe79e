// oidc-provider ships no type declarations; the tests use only its constructor and callback().
declare module 'oidc-provider' {
  interface ProviderInstance {
    callback(): (request: import('node:http').IncomingMessage, response: import('node:http').ServerResponse) => void;
  }
  const Provider: new (issuer: string, configuration: Record<string, unknown>) => ProviderInstance;
  export default Provider;
}
