/** Runs `check` (an assertion) until it passes; past `timeoutMs` its last failure is thrown. */
export const eventually = async (check: () => void, timeoutMs = 5_000, everyMs = 20): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  }
};

/** The `code` of what `action` throws (a gRPC status, a Node error code), undefined when it does not throw. */
export const codeOf = (action: () => unknown): string | undefined => {
  try {
    action();
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code;
  }
};
