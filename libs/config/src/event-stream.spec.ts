import { describe, expect, it } from 'vitest';
import { ConfigInvalidError } from '@sluice/contracts';
import { eventStreamConfig } from './event-stream.js';
import { parseConfig } from './load.js';

describe('the bus and the event stream in the config', () => {
  it('takes a NATS cluster as a comma-separated list of URLs, and the stream replicas (default 1)', () => {
    const config = parseConfig({ bus: { url: 'nats://n1:4222,nats://n2:4222,nats://n3:4222' }, audit: { stream: { replicas: 3 } } });
    expect(config.bus.url.split(',')).toHaveLength(3);
    expect(eventStreamConfig(config)).toEqual({ stream: 'SLUICE_EVENTS', subjectPrefix: 'sluice.events', duplicateWindowMs: 120_000, replicas: 3 });
    expect(eventStreamConfig(parseConfig({})).replicas).toBe(1);
  });

  it('refuses a URL list with spaces or an empty entry, and replicas outside 1..5, naming the key', () => {
    for (const [input, path] of [
      [{ bus: { url: 'nats://n1:4222, nats://n2:4222' } }, 'bus.url'],
      [{ bus: { url: 'nats://n1:4222,,nats://n2:4222' } }, 'bus.url'],
      [{ audit: { stream: { replicas: 7 } } }, 'audit.stream.replicas'],
    ] as const) {
      expect(() => parseConfig(input)).toThrow(ConfigInvalidError);
      try {
        parseConfig(input);
      } catch (error) {
        expect((error as ConfigInvalidError).path).toBe(path);
      }
    }
  });
});
