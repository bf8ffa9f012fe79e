import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { kindOfType, type CloudEvent, type SluiceEventDataByKind } from '@sluice/contracts';
import { QueueShare } from '@sluice/event-bus';
import { createAuditPort, OUTAGE_GRACE_MS } from './audit-port.js';

const recording = { maxRows: 100, maxBytes: 65_536, maxRowBytes: 16_384, maxCommandBytes: 16_384, maxEventBytes: 262_144 };

const given = (bounds = recording) => {
  const published: CloudEvent[] = [];
  const port = createAuditPort({ publish: (event) => published.push(event), healthy: true, acknowledged: async () => undefined }, { source: 'test', recording: bounds, mergeWindowMs: 30 });
  const kinds = () => published.map((event) => kindOfType(event.type));
  return { port, published, kinds };
};

const decided = (commandId: string, decision: 'allow' | 'deny' | 'approve' = 'allow'): SluiceEventDataByKind['command.decided'] => ({
  commandId, resource: 'db', protocol: 'postgres', command: `SELECT ${commandId}`, action: 'read', risk: 'low', decision, rule: 'readers', reason: 'allowed',
});
const completed = (commandId: string): SluiceEventDataByKind['command.completed'] => ({ commandId, outcome: 'SELECT 1', ok: true, durationMs: 1 });
const returned = (commandId: string): SluiceEventDataByKind['result.returned'] => ({
  commandId, columns: ['email'], rows: [['a***@example.com']], rowCount: 1, bytes: 16, truncated: false, maskedCounts: { email: 1 },
});
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('audit port: one command.executed per command that ran without a hold', () => {
  it('merges decision, result and completion (PostgreSQL order) into one event with the session sequence', async () => {
    const { port, published, kinds } = given();
    port.record('s1', 'session.started', { resource: 'db', protocol: 'postgres', subject: { sub: 'a', groups: [], issuer: 'i' }, client: 'c', readOnly: false });
    port.record('s1', 'command.decided', decided('c1'));
    port.record('s1', 'result.returned', returned('c1'));
    port.record('s1', 'command.completed', completed('c1'));
    await turn();
    expect(kinds()).toEqual(['session.started', 'command.executed']);
    expect(published[1]!.data).toEqual({ ...decided('c1'), outcome: 'SELECT 1', ok: true, durationMs: 1, result: { columns: ['email'], rows: [['a***@example.com']], rowCount: 1, bytes: 16, truncated: false, maskedCounts: { email: 1 } } });
    expect(published.map((event) => event.sessionseq)).toEqual([1, 2]);
  });

  it('serialises a command.executed exactly as its fields were recorded: no member for an absent optional field', async () => {
    const { port, published } = given();
    port.record('s1', 'command.decided', decided('c1'));
    port.record('s1', 'command.completed', completed('c1'));
    port.record('s1', 'command.decided', { ...decided('c2'), tables: ['public.t'], truncated: true, commandBytes: 99_999 });
    port.record('s1', 'command.completed', { ...completed('c2'), ok: false, error: { code: 'ERR', message: 'boom' } });
    port.record('s1', 'result.returned', returned('c2'));
    await turn();
    const [plain, full] = published.map((event) => JSON.parse(JSON.stringify(event)) as CloudEvent & { data: Record<string, unknown> });
    // In sorted order (RFC 8785's): the event's JSON is the canonical text the audit store hashes.
    expect(Object.keys(plain!.data)).toEqual(['action', 'command', 'commandId', 'decision', 'durationMs', 'ok', 'outcome', 'protocol', 'reason', 'resource', 'risk', 'rule']);
    expect(Object.keys(full!.data)).toEqual([
      'action', 'command', 'commandBytes', 'commandId', 'decision', 'durationMs', 'error', 'ok', 'outcome', 'protocol', 'reason', 'resource', 'result', 'risk', 'rule', 'tables', 'truncated',
    ]);
    expect(full!.data).toMatchObject({ tables: ['public.t'], truncated: true, commandBytes: 99_999, error: { code: 'ERR', message: 'boom' } });
    expect(plain!.sessionseq).toBe(1);
  });

  it('hands a publisher that takes written events the command.executed as the UTF-8 of the very event it would build', async () => {
    const written: Array<{ id: string; json: string; event: CloudEvent }> = [];
    const objects: CloudEvent[] = [];
    const port = createAuditPort(
      {
        publish: (event) => objects.push(event),
        publishWritten: (id, write, value, event) => {
          const sink = { buffer: new Uint8Array(16), offset: 0, reserve(bytes: number) {
            if (sink.offset + bytes <= sink.buffer.length) return;
            const next = new Uint8Array(2 * (sink.offset + bytes));
            next.set(sink.buffer.subarray(0, sink.offset));
            sink.buffer = next;
          } };
          write(sink, value);
          written.push({ id, json: Buffer.from(sink.buffer.subarray(0, sink.offset)).toString('utf8'), event: event(value) });
        },
        healthy: true,
        acknowledged: async () => undefined,
      },
      { source: 'test', recording, mergeWindowMs: 30 },
    );
    port.record('s1', 'session.started', { resource: 'db', protocol: 'postgres', subject: { sub: 'a', groups: [], issuer: 'i' }, client: 'c', readOnly: false });
    port.record('s1', 'command.decided', decided('c1'));
    port.record('s1', 'result.returned', { ...returned('c1'), maskedCounts: { phone: 1, email: 2 } });
    port.record('s1', 'command.completed', completed('c1'));
    port.record('s1', 'command.decided', { ...decided('c2'), tables: ['public.t'], truncated: true, commandBytes: 99_999 });
    port.record('s1', 'command.completed', { ...completed('c2'), ok: false, error: { code: 'ERR', message: 'boom' } });
    await turn();
    expect(objects.map((event) => kindOfType(event.type))).toEqual(['session.started']);
    expect(written).toHaveLength(2);
    for (const { id, json, event } of written) {
      expect(json).toBe(JSON.stringify(event));
      expect(event.id).toBe(id);
    }
    expect(written.map(({ event }) => [event.sessionseq, (event.data as { commandId: string }).commandId])).toEqual([[2, 'c1'], [3, 'c2']]);
  });

  it('writes a command.executed with every member in sorted order when the masker counted detectors out of order', async () => {
    const { port, published } = given();
    port.record('s1', 'command.decided', { ...decided('c1'), tables: ['public.t'] });
    port.record('s1', 'result.returned', { ...returned('c1'), maskedCounts: { phone: 1, email: 2, credit_card: 3 } });
    port.record('s1', 'command.completed', { ...completed('c1'), ok: false, error: { code: 'ERR', message: 'boom' } });
    await turn();
    const json = JSON.stringify(published[0]);
    // Every object's keys sorted, envelope included: what the audit store needs to hash the JSON as written.
    const sortedEverywhere = (value: unknown): boolean =>
      value === null || typeof value !== 'object'
        ? true
        : Array.isArray(value)
          ? value.every(sortedEverywhere)
          : Object.keys(value).every((key, index, keys) => index === 0 || keys[index - 1]! < key) && Object.values(value).every(sortedEverywhere);
    expect(sortedEverywhere(JSON.parse(json))).toBe(true);
    expect(Object.keys(JSON.parse(json) as object)[0]).toBe('data');
    expect((published[0]!.data as SluiceEventDataByKind['command.executed']).result!.maskedCounts).toEqual({ credit_card: 3, email: 2, phone: 1 });
  });

  it('sends a command whose result came before its completion (PostgreSQL order) at the completion, not at the end of the turn', () => {
    const { port, published, kinds } = given();
    port.record('s1', 'command.decided', decided('c1'));
    port.record('s1', 'command.decided', decided('c2'));
    port.record('s1', 'result.returned', returned('c1'));
    port.record('s1', 'command.completed', completed('c1'));
    // Nothing can join it any more: no microtask is waited for.
    expect(kinds()).toEqual(['command.executed']);
    expect((published[0]!.data as SluiceEventDataByKind['command.executed']).commandId).toBe('c1');
    // A second result of it (a COPY's beside its rows) goes on its own, after what the session keeps back.
    port.record('s1', 'result.returned', { ...returned('c1'), rowCount: 7 });
    expect(kinds()).toEqual(['command.executed', 'command.decided', 'result.returned']);
    expect(published.map((event) => event.sessionseq)).toEqual([1, 2, 3]);
  });

  it('takes a result recorded just after the completion (Redis, HTTP order)', async () => {
    const { port, published, kinds } = given();
    port.record('s1', 'command.decided', decided('c1'));
    port.record('s1', 'command.completed', completed('c1'));
    port.record('s1', 'result.returned', returned('c1'));
    await turn();
    expect(kinds()).toEqual(['command.executed']);
    expect((published[0]!.data as SluiceEventDataByKind['command.executed']).result?.rowCount).toBe(1);
  });

  it('keeps the three events of a refused or held command', async () => {
    const { port, kinds } = given();
    port.record('s1', 'command.decided', decided('c1', 'deny'));
    port.record('s1', 'command.completed', { ...completed('c1'), ok: false, outcome: 'error' });
    port.record('s1', 'command.decided', decided('c2', 'approve'));
    await turn();
    expect(kinds()).toEqual(['command.decided', 'command.completed', 'command.decided']);
  });

  it('sends a decision on its own once the merge window is over, and the outcome after it', async () => {
    const { port, kinds } = given();
    port.record('s1', 'command.decided', decided('slow'));
    await vi.waitFor(() => expect(kinds()).toEqual(['command.decided']), { timeout: 5_000, interval: 10 });
    port.record('s1', 'result.returned', returned('slow'));
    port.record('s1', 'command.completed', completed('slow'));
    await turn();
    expect(kinds()).toEqual(['command.decided', 'result.returned', 'command.completed']);
  });

  it('merges a command whose outcome was already waiting to be read when the window ran out (a busy proxy)', async () => {
    // A pipelined burst from many clients: the proxy's loop is busy for longer than the window,
    // and the target's reply waits in the socket meanwhile. It is read before the decision goes.
    const { port, kinds } = given();
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    const [target] = await accepted;
    await once(client, 'connect');
    const replied = new Promise<void>((resolve) =>
      client.once('data', () => {
        port.record('s1', 'command.completed', completed('c1'));
        port.record('s1', 'result.returned', returned('c1'));
        resolve();
      }),
    );
    await turn();
    port.record('s1', 'command.decided', decided('c1'));
    target.write('+OK\r\n');
    // The loop is busy past the window (30 ms here) with the reply already in the socket.
    const busyUntil = performance.now() + 80;
    while (performance.now() < busyUntil);
    await replied;
    await turn();
    await turn();
    expect(kinds()).toEqual(['command.executed']);
    client.destroy();
    target.destroy();
    server.close();
  });

  it('sends what it keeps back before any other event of the session, in order', async () => {
    const { port, published, kinds } = given();
    port.record('s1', 'command.decided', decided('c1'));
    port.record('s2', 'command.decided', decided('other'));
    port.record('s1', 'session.ended', { resource: 'db', reason: 'client closed', commands: 1, durationMs: 5 });
    expect(kinds()).toEqual(['command.decided', 'session.ended']);
    expect(published.map((event) => event.subject)).toEqual(['s1', 's1']);
    port.flush();
    expect(kinds()).toEqual(['command.decided', 'session.ended', 'command.decided']);
  });

  it('records the result apart when a command and its result could outgrow one event', async () => {
    const { port, kinds } = given({ ...recording, maxBytes: 250_000, maxEventBytes: 262_144 });
    port.record('s1', 'command.decided', decided('c1'));
    port.record('s1', 'result.returned', returned('c1'));
    port.record('s1', 'command.completed', completed('c1'));
    await turn();
    expect(kinds()).toEqual(['command.executed', 'result.returned']);
  });

  it('acknowledged() sends a kept-back decision at once and waits for the bus', async () => {
    const published: CloudEvent[] = [];
    let acked = false;
    const port = createAuditPort(
      { publish: (event) => published.push(event), healthy: true, acknowledged: async () => void (acked = true) },
      { source: 'test', recording, mergeWindowMs: 60_000 },
    );
    port.record('s1', 'command.decided', decided('c1'));
    await port.acknowledged('s1');
    expect(acked).toBe(true);
    expect(published.map((event) => kindOfType(event.type))).toEqual(['command.decided']);
  });

  it('acknowledged() rejects when the bus does not acknowledge in time, so the command is refused', async () => {
    const port = createAuditPort({ publish: () => undefined, healthy: true, acknowledged: () => new Promise(() => undefined) }, { source: 'test', recording, ackTimeoutMs: 50 });
    port.record('s1', 'command.decided', decided('c1'));
    await expect(port.acknowledged('s1')).rejects.toThrow(/not acknowledged/);
  });
});

describe('audit port: each agent has one share of the publisher queue', () => {
  const started = (sub: string): SluiceEventDataByKind['session.started'] => ({ resource: 'db', protocol: 'postgres', subject: { sub, groups: [], issuer: 'i' }, client: 'c', readOnly: false });
  const ended = { reason: 'client_closed', commands: 0, durationMs: 1 } as unknown as SluiceEventDataByKind['session.ended'];
  const given = () => {
    const shares: (QueueShare | undefined)[] = [];
    const events: CloudEvent[] = [];
    /** The events to come each check counted, in order. */
    const counted: number[] = [];
    const publisher = {
      publish: (event: CloudEvent, share?: QueueShare) => {
        events.push(event);
        shares.push(share);
        if (share) share.events += 1;
      },
      healthy: true,
      acknowledged: async () => undefined,
      overShare: (share: QueueShare, coming = 0) => {
        counted.push(coming);
        return share.events + coming >= 3;
      },
    };
    return { port: createAuditPort(publisher, { source: 'test', recording, mergeWindowMs: 30 }), shares, counted, events };
  };

  it("counts an agent's sessions against one share, another agent's against its own", () => {
    const { port, shares } = given();
    port.record('s1', 'session.started', started('a'));
    port.record('s2', 'session.started', started('a'));
    port.record('s3', 'session.started', started('b'));
    expect(shares[0]).toBeInstanceOf(QueueShare);
    expect(shares[1]).toBe(shares[0]);
    expect(shares[2]).not.toBe(shares[0]);
  });

  it('pauses a session whose agent is past its share, counting what is to come, and resumes it through the share', () => {
    const { port, shares } = given();
    port.record('s1', 'session.started', started('a'));
    const resume = vi.fn();
    expect(port.backlogged('s1', resume)).toBe(false);
    port.coming('s1', 2);
    expect(port.backlogged('s1', resume)).toBe(true);
    expect(shares[0]!.waiting).toBe(true);
    for (const resumeNow of shares[0]!.takeResumers()!) resumeNow();
    expect(resume).toHaveBeenCalledTimes(1);
    expect(resume).toHaveBeenCalledWith(false);
    // A session the port has no agent for (none started) is never paused.
    port.coming('unknown', 100);
    expect(port.backlogged('unknown', resume)).toBe(false);
  });

  it("keeps an ended agent's share while its events wait (reconnecting gets no fresh share), and lets it go once they are done", () => {
    const { port, shares } = given();
    port.record('s1', 'session.started', started('a'));
    port.record('s1', 'session.ended', ended);
    port.record('s2', 'session.started', started('a'));
    expect(shares[2]).toBe(shares[0]);
    port.record('s2', 'session.ended', ended);
    shares[0]!.events = 0;
    port.record('s3', 'session.started', started('a'));
    expect(shares[4]).not.toBe(shares[0]);
  });

  it('resumes by itself a session paused with nothing of its agent queued, if nothing comes', async () => {
    const { port, shares } = given();
    port.record('s1', 'session.started', started('a'));
    shares[0]!.events = 0;
    const resume = vi.fn();
    port.coming('s1', 5);
    expect(port.backlogged('s1', resume)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(resume).toHaveBeenCalledTimes(1);
  });

  it("counts what all the agent's sessions have to come: their commands taken, their decisions kept back", () => {
    const { port, shares } = given();
    port.record('s1', 'session.started', started('a'));
    port.record('s2', 'session.started', started('a'));
    port.record('s3', 'session.started', started('b'));
    shares[0]!.events = 0;
    shares[2]!.events = 0;
    // What s1 has taken and not decided yet pauses s2, with none of its own.
    port.coming('s1', 1);
    expect(port.backlogged('s1', vi.fn())).toBe(false);
    port.coming('s1', 1);
    expect(port.backlogged('s1', vi.fn())).toBe(false);
    expect(port.backlogged('s2', vi.fn())).toBe(false);
    port.coming('s1', 1);
    expect(port.backlogged('s2', vi.fn())).toBe(true);
    port.coming('s1', -3);
    // Decisions kept back for their outcome in s1 count for s2 too, not for another agent's s3.
    for (const commandId of ['c1', 'c2', 'c3']) port.record('s1', 'command.decided', decided(commandId));
    expect(port.backlogged('s2', vi.fn())).toBe(true);
    expect(port.backlogged('s3', vi.fn())).toBe(false);
    port.flush();
    expect(port.backlogged('s3', vi.fn())).toBe(false);
  });

  it('gives back what a session ended with still to come, and never takes back more than a session reported', () => {
    const { port, shares, counted } = given();
    for (const session of ['s1', 's2', 's3']) port.record(session, 'session.started', started('a'));
    const check = (session: string): number => {
      shares[0]!.events = 0;
      port.backlogged(session, vi.fn());
      return counted.at(-1)!;
    };
    // A burst in each session: commands taken, some dispatched, the rest still waiting.
    for (const session of ['s1', 's2', 's3']) for (let command = 0; command < 5; command += 1) port.coming(session, 2);
    port.coming('s1', -2);
    port.coming('s2', -4);
    expect(check('s3')).toBe(8 + 6 + 10);
    // s1 and s2 close mid-burst: their commands never dispatched will not come from them.
    port.record('s1', 'session.ended', ended);
    port.record('s2', 'session.ended', ended);
    expect(check('s3')).toBe(10);
    // A give-back after the end (a dispatch the closed connection still made) moves nothing.
    port.coming('s1', -2);
    expect(check('s3')).toBe(10);
    // Nor does one larger than what the session reported: the count never goes below zero.
    port.coming('s3', -100);
    expect(check('s3')).toBe(0);
    port.coming('s3', 2);
    expect(check('s3')).toBe(2);
    // The last one closes mid-burst too: the agent's next session finds nothing of theirs to come.
    port.record('s4', 'session.started', started('a'));
    port.record('s3', 'session.ended', ended);
    expect(check('s4')).toBe(0);
  });

  it("counts many sessions' commands as one total: an agent of 500 sessions is held by the one that takes it past its share", () => {
    const { port, shares } = given();
    const sessions = Array.from({ length: 500 }, (_, index) => `s${index}`);
    for (const session of sessions) port.record(session, 'session.started', started('a'));
    shares[0]!.events = 0;
    port.coming('s0', 1);
    port.coming('s1', 1);
    expect(port.backlogged('s499', vi.fn())).toBe(false);
    port.coming('s250', 1);
    expect(port.backlogged('s499', vi.fn())).toBe(true);
  });

  it('goes on counting a session whose re-authentication was refused (recorded as its session.rejected): same share, sequence unbroken', () => {
    const { port, shares, events } = given();
    port.record('s1', 'session.started', started('a'));
    port.record('s1', 'session.rejected', { resource: 'kv', protocol: 'redis', client: 'c', reason: 'token rejected on re-authentication', code: 'ERR_TOKEN_INVALID' });
    port.record('s1', 'command.decided', decided('c1', 'deny'));
    expect(events.map((event) => event.sessionseq)).toEqual([1, 2, 3]);
    expect(shares.at(-1)).toBe(shares[0]);
    shares[0]!.events = 0;
    port.coming('s1', 3);
    expect(port.backlogged('s1', vi.fn())).toBe(true);
  });

  it('ends a paused session as audit unavailable once the bus has been away a while, but not the reading of a target', async () => {
    const publisher = {
      publish: (_event: CloudEvent, share?: QueueShare) => void (share && (share.events += 1)),
      healthy: true,
      acknowledged: async () => undefined,
      overShare: (share: QueueShare) => share.events >= 1,
    };
    const port = createAuditPort(publisher, { source: 'test', recording });
    port.record('s1', 'session.started', started('a'));
    const [commands, target] = [vi.fn(), vi.fn()];
    expect(port.backlogged('s1', commands)).toBe(true);
    expect(port.backlogged('s1', target, 'target')).toBe(true);
    publisher.healthy = false;
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_GRACE_MS + 300));
    expect(commands).toHaveBeenCalledTimes(1);
    expect(commands).toHaveBeenCalledWith(true);
    expect(target).not.toHaveBeenCalled();
  });
});
