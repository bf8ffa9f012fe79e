/**
 * Undo steps registered as resources are created, run last-in first-out exactly once, whether the
 * run finished, failed, hit its deadline or was interrupted.
 */
export class CleanupStack {
  readonly #steps: Array<{ label: string; undo: () => Promise<void> | void }> = [];
  #running: Promise<void> | undefined;

  defer(label: string, undo: () => Promise<void> | void): void {
    this.#steps.push({ label, undo });
  }

  run(log: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Promise<void> {
    this.#running ??= (async () => {
      while (this.#steps.length > 0) {
        const step = this.#steps.pop()!;
        try {
          await Promise.race([
            Promise.resolve().then(step.undo),
            new Promise((_, reject) => setTimeout(() => reject(new Error('timed out after 30 s')), 30_000).unref()),
          ]);
        } catch (error) {
          log(`cleanup: ${step.label} failed: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    })();
    return this.#running;
  }
}
