/** Polls `check` every 50 ms until it holds; throws naming `what` once `timeoutMs` has passed. */
export const waitUntil = async (check: () => Promise<boolean> | boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};
