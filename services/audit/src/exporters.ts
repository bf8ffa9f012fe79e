import { appendFile, mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { readSecret, type ExporterConfig } from '@sluice/config';
import { SluiceError, SluiceErrorCode, type CloudEvent } from '@sluice/contracts';
import { toCef, toSyslogLine } from './cef.js';
import { SessionSubjects, toOcsf } from './ocsf.js';

/** Sends a batch to a SIEM; throws when the batch was not delivered (it is retried whole). */
export interface Exporter {
  readonly name: string;
  send(events: readonly CloudEvent[]): Promise<void>;
  close(): Promise<void>;
}

export class ExporterDeliveryError extends SluiceError {
  readonly code = SluiceErrorCode.ExportFailed;
}

/** `audit-export-<name>` or, unnamed, `audit-export-<index>`; NATS durable names allow [A-Za-z0-9_-]. */
export const exporterName = (config: ExporterConfig, index: number): string =>
  (config.name ?? String(index)).replace(/[^A-Za-z0-9_-]/g, '_');

const postJson = async (url: string, body: string, headers: Record<string, string>): Promise<void> => {
  const response = await request(url, { method: 'POST', body, headers, headersTimeout: 10_000, bodyTimeout: 10_000 });
  await response.body.dump();
  if (response.statusCode < 200 || response.statusCode >= 300) {
    throw new ExporterDeliveryError(`${new URL(url).host} answered ${response.statusCode}`);
  }
};

const authorization = (token: string | undefined, scheme: string): Record<string, string> =>
  token === undefined ? {} : { authorization: token.includes(' ') ? token : `${scheme} ${token}` };

/** Event ids delivered lately, so an event published twice (a new batch message) is exported once. */
class RecentIds {
  private readonly ids = new Set<string>();
  constructor(private readonly capacity = 200_000) {}
  has(id: string): boolean {
    return this.ids.has(id);
  }
  add(id: string): void {
    this.ids.add(id);
    if (this.ids.size > this.capacity) this.ids.delete(this.ids.values().next().value!);
  }
}

/** Drops events already delivered; remembers ids only once the delivery succeeded. */
const deduplicated = (exporter: Exporter): Exporter => {
  const recent = new RecentIds();
  return {
    name: exporter.name,
    send: async (events) => {
      const seen = new Set<string>();
      const fresh = events.filter((event) => !recent.has(event.id) && !seen.has(event.id) && seen.add(event.id));
      if (fresh.length === 0) return;
      await exporter.send(fresh);
      for (const event of fresh) recent.add(event.id);
    },
    close: () => exporter.close(),
  };
};

export const createExporter = (config: ExporterConfig, index: number, baseDir: string): Exporter =>
  deduplicated(createSink(config, index, baseDir));

const createSink = (config: ExporterConfig, index: number, baseDir: string): Exporter => {
  const name = exporterName(config, index);
  const subjects = new SessionSubjects();
  const ocsf = config.format === 'ocsf';
  const shape = (events: readonly CloudEvent[]): unknown[] => {
    for (const event of events) subjects.observe(event);
    return ocsf ? events.map((event) => toOcsf(event, subjects.lookup)) : [...events];
  };
  const token = readSecret(config.token, baseDir);

  switch (config.type) {
    case 'webhook': {
      if (!config.url) throw new ExporterDeliveryError(`exporter ${name}: webhook needs url`);
      const url = config.url;
      const contentType = ocsf ? 'application/json' : 'application/cloudevents-batch+json';
      return {
        name,
        send: async (events) => postJson(url, JSON.stringify(shape(events)), { 'content-type': contentType, ...authorization(token, 'Bearer') }),
        close: async () => undefined,
      };
    }
    case 'splunk': {
      if (!config.url) throw new ExporterDeliveryError(`exporter ${name}: splunk needs url`);
      const url = new URL(config.url);
      if (url.pathname === '/' || url.pathname === '') url.pathname = '/services/collector/event';
      const sourcetype = ocsf ? 'sluice:ocsf' : 'sluice:cloudevents';
      return {
        name,
        send: async (events) => {
          const shaped = shape(events);
          // HEC takes several event objects concatenated in one body.
          const body = shaped
            .map((event, position) => JSON.stringify({ time: Date.parse(events[position]!.time) / 1000, source: 'sluice', sourcetype, event }))
            .join('\n');
          await postJson(url.toString(), body, { 'content-type': 'application/json', ...authorization(token, 'Splunk') });
        },
        close: async () => undefined,
      };
    }
    case 'file': {
      const path = resolve(baseDir, config.path ?? './.sluice/audit-export.jsonl');
      let ready: Promise<unknown> | undefined;
      return {
        name,
        send: async (events) => {
          ready ??= mkdir(dirname(path), { recursive: true });
          await ready;
          await appendFile(path, shape(events).map((event) => `${JSON.stringify(event)}\n`).join(''));
        },
        close: async () => undefined,
      };
    }
    case 'syslog':
      return syslogExporter(name, config, subjects, ocsf);
  }
};

const syslogExporter = (name: string, config: ExporterConfig, subjects: SessionSubjects, ocsf: boolean): Exporter => {
  const host = config.host ?? (config.url ? new URL(config.url).hostname : '127.0.0.1');
  const port = config.port ?? (config.url ? Number(new URL(config.url).port) : 514);
  let socket: Socket | undefined;

  const open = (): Promise<Socket> =>
    new Promise((resolveSocket, reject) => {
      const next = connect({ host, port });
      next.setNoDelay(true);
      next.once('connect', () => {
        next.removeListener('error', reject);
        next.on('error', () => next.destroy());
        next.on('close', () => {
          if (socket === next) socket = undefined;
        });
        resolveSocket(next);
      });
      next.once('error', reject);
    });

  return {
    name,
    send: async (events) => {
      for (const event of events) subjects.observe(event);
      const text = events
        .map((event) => toSyslogLine(event, ocsf ? JSON.stringify(toOcsf(event, subjects.lookup)) : toCef(event, subjects.lookup)))
        .join('');
      socket ??= await open();
      const target = socket;
      // One write per batch; resolved once handed to the kernel.
      await new Promise<void>((done, fail) => target.write(text, (error) => (error ? fail(error) : done())));
    },
    close: async () => {
      socket?.end();
      socket = undefined;
    },
  };
};
