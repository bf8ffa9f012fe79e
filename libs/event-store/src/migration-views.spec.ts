import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { COMMAND_DECIDED, COMMAND_EXECUTED, commandsView, sessionsView } from './migration-views.js';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

// The digests of the texts migrations 0001 and 0004 ran when they were written: a database
// migrated then must get the same views as one migrated now.
describe('the compliance views the migrations create', () => {
  it('migration 0001 still creates its sessions and commands views to the letter', () => {
    expect(sha256(sessionsView('CREATE', COMMAND_DECIDED.commandKinds))).toBe('dfce74bd58a7e46c3e62d7fc6b3d673cfa4d62fdab08e00c416986c72826bdc1');
    expect(sha256(commandsView('CREATE', COMMAND_DECIDED.viewKinds, COMMAND_DECIDED.completion, COMMAND_DECIDED.result))).toBe('5c757cc1cec597abb3882b895fe3d2691f078d931e6f19e58cc6ca967fa1fa00');
  });

  it('migration 0004 still replaces them to the letter', () => {
    expect(sha256(sessionsView('CREATE OR REPLACE', COMMAND_EXECUTED.commandKinds))).toBe('80113addca41e6d5695aa33949d240bf95057844cf0fdf1a41b1d1f07ce4b298');
    expect(sha256(commandsView('CREATE OR REPLACE', COMMAND_EXECUTED.viewKinds, COMMAND_EXECUTED.completion, COMMAND_EXECUTED.result))).toBe('f882b60cc2150202903cecdbaa8c323f62f9a1d2ee83fb60541d21ca0422b786');
  });
});
