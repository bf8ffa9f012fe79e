import type { Server } from '@grpc/grpc-js';

/**
 * Stops a gRPC server: in-flight calls get `graceMs` to finish, then whatever is left is cut, so
 * a stuck stream can never hold a service's shutdown.
 */
export const shutdownGrpcServer = (server: Server, graceMs = 2_000): Promise<void> =>
  new Promise<void>((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
