import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Bytes for the client and the target, batched: one write per drained batch. The flush runs once
 * the current callback and the promise jobs it queued (cached decisions) are done, so a pipelined
 * burst goes out in one write.
 */
export class WriteBatch {
  private clientOut: Buffer[] = [];
  private upstreamOut: Buffer[] = [];
  private scheduled = false;

  constructor(
    private readonly client: Duplex,
    private readonly target: () => Socket | undefined,
    /** The client's socket buffers past its high-water mark: what makes its bytes is to wait. */
    private readonly clientFull: () => void,
  ) {}

  toClient(bytes: Buffer): void {
    this.clientOut.push(bytes);
    this.schedule();
  }

  toTarget(bytes: Buffer): void {
    this.upstreamOut.push(bytes);
    this.schedule();
  }

  /** Bytes for the client not written yet. */
  get clientPending(): boolean {
    return this.clientOut.length > 0;
  }

  flush(): void {
    this.scheduled = false;
    const target = this.target();
    if (this.upstreamOut.length > 0 && target && !target.destroyed) {
      const out = this.upstreamOut.length === 1 ? this.upstreamOut[0]! : Buffer.concat(this.upstreamOut);
      this.upstreamOut = [];
      // The target cannot keep up: stop reading from the client until it drains.
      if (!target.write(out)) this.client.pause();
    }
    if (this.clientOut.length > 0 && !this.client.destroyed) {
      const out = this.clientOut.length === 1 ? this.clientOut[0]! : Buffer.concat(this.clientOut);
      this.clientOut = [];
      if (!this.client.write(out)) this.clientFull();
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    process.nextTick(() => this.flush());
  }
}
