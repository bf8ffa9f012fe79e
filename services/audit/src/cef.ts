import { hostname } from 'node:os';
import { kindOfType, type CloudEvent } from '@sluice/contracts';
import { PRODUCT, type SubjectLookup } from './ocsf.js';

/**
 * ArcSight CEF:0 payloads inside RFC 5424 syslog lines.
 * @see https://www.microfocus.com/documentation/arcsight/arcsight-smartconnectors-8.4/pdfdoc/cef-implementation-standard/cef-implementation-standard.pdf
 * @see https://www.rfc-editor.org/rfc/rfc5424
 */
const escapeHeader = (text: string): string => text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/[\r\n]+/g, ' ');
const escapeExtension = (text: string): string =>
  text.replace(/\\/g, '\\\\').replace(/=/g, '\\=').replace(/\r?\n/g, '\\n').replace(/\r/g, '\\r');

const severityOf = (decision: string | undefined, risk: string | undefined): number => {
  if (decision === 'deny') return 7;
  if (decision === 'approve') return 5;
  return risk === 'critical' ? 8 : risk === 'high' ? 6 : 3;
};

const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined);

export const toCef = (event: CloudEvent, lookup: SubjectLookup = () => undefined): string => {
  const kind = kindOfType(event.type) ?? event.type;
  const data = (event.data ?? {}) as unknown as Record<string, unknown>;
  const subject = (data.subject as { sub?: string } | undefined)?.sub ?? lookup(event.subject)?.sub;
  const decision = str(data.decision);
  const extensions: Array<[string, string | undefined]> = [
    ['rt', String(Date.parse(event.time))],
    ['externalId', event.id],
    ['suser', subject],
    ['act', decision],
    ['dvchost', str(data.resource)],
    ['app', str(data.protocol)],
    ['request', str(data.command)],
    ['outcome', str(data.outcome) ?? (data.ok === undefined ? undefined : data.ok ? 'success' : 'failure')],
    ['reason', str(data.reason)],
    ['cs1Label', 'rule'],
    ['cs1', str(data.rule)],
    ['cs2Label', 'session'],
    ['cs2', event.subject],
    ['cs3Label', 'risk'],
    ['cs3', str(data.risk)],
    ['cs4Label', 'approval'],
    ['cs4', str(data.approvalId)],
    ['cn1Label', 'rowCount'],
    // command.executed carries its result's counts under `result`.
    ['cn1', str(data.rowCount) ?? str((data.result as { rowCount?: unknown } | undefined)?.rowCount)],
  ];
  const extension = extensions
    .filter(([, value]) => value !== undefined && value !== '')
    .map(([key, value]) => `${key}=${escapeExtension(value!)}`)
    .join(' ');
  const header = ['CEF:0', PRODUCT.vendor_name, PRODUCT.name, PRODUCT.version, kind, kind.replace('.', ' '), String(severityOf(decision, str(data.risk)))]
    .map((part, index) => (index === 0 ? part : escapeHeader(part)))
    .join('|');
  return `${header}|${extension}`;
};

/** facility 13 = log audit; severity 4 (warning) for denials, else 6 (informational). */
export const toSyslogLine = (event: CloudEvent, payload: string, host = hostname()): string => {
  const denied = (event.data as { decision?: string } | undefined)?.decision === 'deny';
  const pri = 13 * 8 + (denied ? 4 : 6);
  const msgId = (kindOfType(event.type) ?? 'event').replace(/[^\x21-\x7e]/g, '').slice(0, 32);
  // Non-transparent framing (RFC 6587 §3.4.2): one line per message; CEF escapes newlines.
  return `<${pri}>1 ${event.time} ${host || '-'} sluice - ${msgId} - ${payload.replace(/\n/g, ' ')}\n`;
};
