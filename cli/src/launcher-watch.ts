/**
 * `npx sluice …` and `npm start` run us under npm (npm → sh → node). Killing that npm process does
 * not reach us: we would keep running, orphaned, with every port bound. Under npm (which sets
 * npm_command) we therefore treat our parent's disappearance as a stop request. Started any other
 * way (a shell, systemd, a test), nothing changes: a background process may outlive its shell.
 */
export const stopWhenLauncherExits = (stop: (reason: string) => void, intervalMs = 1_000): void => {
  if (!process.env.npm_command) return;
  const launcher = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === launcher) return;
    clearInterval(timer);
    stop('launcher exited');
  }, intervalMs);
  timer.unref();
};
