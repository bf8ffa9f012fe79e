import net from 'node:net';
import { randomInt } from 'node:crypto';
import { encodeCancelRequest } from '@sluice/codec-pg';

interface UpstreamKey {
  readonly host: string;
  readonly port: number;
  readonly processId: number;
  readonly secretKey: number;
}

/**
 * Each client gets the target backend's own process id (as `pg_backend_pid()`, pg_stat_activity
 * and a NOTIFY's sender pid show it, so tooling that terminates or inspects "its" backend finds
 * it) with a secret key of the proxy's own: the target's secret never leaves the proxy, and a
 * CancelRequest with the proxy's key is mapped to the target's. One registry per adapter.
 */
/**
 * The session's own answer to a CancelRequest: true when the proxy applied it itself (the agent's
 * statement was still held by the proxy, or the backend runs nothing of the agent's), false when
 * the target is to get it.
 */
export type CancelHandler = () => boolean;

export class CancelKeys {
  readonly #keys = new Map<string, UpstreamKey & { readonly handler?: CancelHandler | undefined }>();

  issue(upstream: UpstreamKey, handler?: CancelHandler): { processId: number; secretKey: number } {
    const processId = upstream.processId;
    for (;;) {
      const secretKey = randomInt(-0x80000000, 0x7fffffff);
      const key = `${processId}:${secretKey}`;
      // The same pid on another target of this resource (a failover) gets another secret.
      if (this.#keys.has(key) || secretKey === upstream.secretKey) continue;
      this.#keys.set(key, { ...upstream, handler });
      return { processId, secretKey };
    }
  }

  release(processId: number, secretKey: number): void {
    this.#keys.delete(`${processId}:${secretKey}`);
  }

  /** Sends the target a CancelRequest for the mapped session; unknown keys are ignored, as PostgreSQL does. */
  cancel(processId: number, secretKey: number): Promise<boolean> {
    const upstream = this.#keys.get(`${processId}:${secretKey}`);
    if (!upstream) return Promise.resolve(false);
    if (upstream.handler?.()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const socket = net.connect({ host: upstream.host, port: upstream.port });
      socket.setTimeout(5000, () => socket.destroy());
      socket.once('connect', () => socket.end(encodeCancelRequest(upstream.processId, upstream.secretKey)));
      socket.once('close', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
  }
}
