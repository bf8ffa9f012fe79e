/**
 * A command that ran without a hold is recorded as one `command.executed` event (its decision,
 * outcome and result); specs that look for a command's decision, completion or result read both
 * forms alike through this: each command.executed becomes the three events it stands for.
 */
export const asSeparateEvents = <E extends { readonly type: string; readonly data: Record<string, unknown> }>(events: readonly E[]): E[] =>
  events.flatMap((event) => {
    const match = /^(sluice\.)?command\.executed(\.v\d+)?$/.exec(event.type);
    if (!match) return [event];
    const type = (kind: string) => `${match[1] ?? ''}${kind}${match[2] ?? ''}`;
    const { outcome, ok, error, durationMs, result, ...decided } = event.data;
    const completed = { commandId: decided.commandId, outcome, ok, ...(error === undefined ? {} : { error }), durationMs };
    return [
      { ...event, type: type('command.decided'), data: decided },
      { ...event, type: type('command.completed'), data: completed },
      ...(result === undefined ? [] : [{ ...event, type: type('result.returned'), data: { commandId: decided.commandId, ...(result as Record<string, unknown>) } }]),
    ];
  });
