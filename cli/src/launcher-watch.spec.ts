import { describe, expect, it } from 'vitest';
import { launcherOf } from './launcher-watch.js';

const tree = (processes: Record<number, { ppid: number; name: string }>) => (pid: number) => processes[pid];

describe('the launcher Sluice watches', () => {
  it('is npm above the shell npm runs us through (npm → sh → node)', () => {
    expect(launcherOf(20, tree({ 20: { ppid: 10, name: 'sh' }, 10: { ppid: 5, name: 'npm start' } }))).toBe(10);
    expect(launcherOf(20, tree({ 20: { ppid: 10, name: 'bash' }, 10: { ppid: 5, name: 'node' } }))).toBe(10);
  });

  it('is the parent itself when that is no shell (start script, supervisor)', () => {
    expect(launcherOf(30, tree({ 30: { ppid: 20, name: 'node' }, 20: { ppid: 10, name: 'sh' } }))).toBe(30);
  });

  it('stays the shell when it has no launcher left above it, or nothing can be told', () => {
    expect(launcherOf(20, tree({ 20: { ppid: 1, name: 'sh' } }))).toBe(20);
    expect(launcherOf(20, tree({}))).toBe(20);
  });
});
