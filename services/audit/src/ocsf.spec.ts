import { describe, expect, it } from 'vitest';
import { buildEvent } from '@sluice/contracts';
import { toCef, toSyslogLine } from './cef.js';
import { SessionSubjects, toOcsf } from './ocsf.js';

const at = new Date('2026-03-04T05:06:07.890Z');
const started = buildEvent('session.started', {
  id: 'e1',
  source: 'proxy',
  subject: 's1',
  time: at,
  data: { resource: 'shop-db', protocol: 'postgres', subject: { sub: 'agent-x', groups: ['support'], issuer: 'http://idp' }, client: '127.0.0.1:5000', readOnly: true },
});
const decided = (protocol: 'postgres' | 'redis' | 'http', command: string, decision: 'allow' | 'deny' | 'approve') =>
  buildEvent('command.decided', {
    id: 'e2',
    source: 'proxy',
    subject: 's1',
    time: at,
    data: { commandId: 'c1', resource: 'shop-db', protocol, command, action: 'read', risk: 'low', decision, rule: 'r1', reason: 'because' },
  });

describe('OCSF mapping', () => {
  it('maps an event.rejected alert to a high-severity base event naming the reason', () => {
    const alert = buildEvent('event.rejected', { id: 'rejected:S:1:0', source: 'sluice/audit', subject: 'audit', time: at, data: { reason: 'unsigned', natsSubject: 'sluice.events.approval.decided', streamSeq: 1, eventId: 'forged' } });
    expect(toOcsf(alert)).toMatchObject({ class_uid: 0, severity_id: 4, message: 'audit refused an event as not genuine: unsigned', unmapped: { eventId: 'forged' } });
  });

  it('maps session.started to Authentication Logon with the agent as actor', () => {
    expect(toOcsf(started)).toMatchObject({
      class_uid: 3002,
      category_uid: 3,
      activity_id: 1,
      type_uid: 300201,
      time: at.getTime(),
      status_id: 1,
      metadata: { product: { name: 'Sluice', vendor_name: 'Sluice' }, uid: 'e1', version: expect.stringMatching(/^1\./) },
      actor: { user: { name: 'agent-x', uid: 'agent-x' }, session: { uid: 's1' } },
      unmapped: { event_id: 'e1' },
    });
  });

  it('maps a denied SQL command to Datastore Activity, blocked, with the session subject as actor', () => {
    const subjects = new SessionSubjects();
    subjects.observe(started);
    expect(toOcsf(decided('postgres', 'DROP TABLE x', 'deny'), subjects.lookup)).toMatchObject({
      class_uid: 6005,
      category_uid: 6,
      status_id: 2,
      disposition_id: 2,
      actor: { user: { name: 'agent-x' } },
      query_info: { query_string: 'DROP TABLE x' },
    });
  });

  it('maps a command.executed to one Datastore Activity with its outcome and result counts (CEF too)', () => {
    const executed = buildEvent('command.executed', {
      id: 'e3',
      source: 'proxy',
      subject: 's1',
      time: at,
      data: {
        commandId: 'c1', resource: 'shop-db', protocol: 'postgres', command: 'SELECT email FROM customers', action: 'read', risk: 'low', decision: 'allow', rule: 'r1', reason: 'ok',
        outcome: 'SELECT 2', ok: true, durationMs: 3,
        result: { columns: ['email'], rows: [['a***@example.com'], ['b***@example.com']], rowCount: 2, bytes: 32, truncated: false, maskedCounts: { email: 2 } },
      },
    });
    expect(toOcsf(executed)).toMatchObject({
      class_uid: 6005,
      status_id: 1,
      status_code: 'SELECT 2',
      duration: 3,
      query_info: { query_string: 'SELECT email FROM customers' },
      unmapped: { decision: 'allow', outcome: 'SELECT 2', row_count: 2, masked_counts: { email: 2 } },
    });
    // Row values stay in the store: the SIEM gets the shape and the counts.
    expect(JSON.stringify(toOcsf(executed))).not.toContain('a***@example.com');
    expect(toCef(executed)).toMatch(/\|command\.executed\|.*outcome=SELECT 2.*cn1=2/);
  });

  it('maps an HTTP command to API Activity with the method as activity', () => {
    expect(toOcsf(decided('http', 'DELETE /v1/invoices/1', 'approve'))).toMatchObject({ class_uid: 6003, activity_id: 4, disposition_id: 14 });
  });
});

describe('CEF over syslog', () => {
  it('escapes pipes in the header and equals signs in extensions when a command holds them', () => {
    const cef = toCef(decided('postgres', "SELECT 'a=b|c'", 'allow'));
    expect(cef).toMatch(/^CEF:0\|Sluice\|Sluice\|[^|]+\|command\.decided\|command decided\|3\|/);
    expect(cef).toContain("request=SELECT 'a\\=b|c'");
  });

  it('frames one RFC 5424 line per event with the audit facility', () => {
    const line = toSyslogLine(decided('postgres', 'SELECT 1', 'deny'), 'CEF:0|x', 'host1');
    expect(line).toBe(`<108>1 ${at.toISOString()} host1 sluice - command.decided - CEF:0|x\n`);
  });
});
