import { buildEvent } from '@sluice/contracts';
import { normalizeEvent, splitEvent, joinEvent, chainHash, canonicalJson, GENESIS_HASH } from '../libs/event-store/dist/chain.js';
const N = 50000;
const events = Array.from({ length: N }, (_, index) => buildEvent('command.decided', {
  id: `x-${index}`, source: 'proxy', subject: `session-${index % 200}`, time: new Date(),
  data: { commandId: `c${index}`, resource: 'shop-db', protocol: 'postgres', command: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1', action: 'read', risk: 'low', decision: 'allow', rule: 'support-read', reason: 'allowed by support-read' },
}));
const json = JSON.stringify(events);
const t = (label, fn) => { for (let r = 0; r < 3; r++) { const t0 = performance.now(); const out = fn(); if (r === 2) console.log(label.padEnd(20), (performance.now() - t0).toFixed(0), 'ms'); } };
t('JSON.parse', () => JSON.parse(json));
const recv = new Date();
let norm; t('normalize', () => (norm = events.map((e) => normalizeEvent(e, recv))));
let split; t('split', () => (split = norm.map(splitEvent)));
let joined; t('join', () => (joined = split.map(joinEvent)));
t('canonical(joined)', () => joined.map(canonicalJson));
t('canonical(norm)', () => norm.map(canonicalJson));
t('hash', () => joined.map((e) => chainHash(GENESIS_HASH, e)));
t('JSON.stringify data', () => split.map((c) => JSON.stringify(c.data)));
