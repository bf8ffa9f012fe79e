import pg from 'pg';
const db = process.argv[2];
const c = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:5432/${db}` }); await c.connect();
const N = 1500, R = 30;
const mk = (r) => Array.from({ length: N }, (_, i) => ({ id: crypto.randomUUID(), session_id: `s-${i % 200}`, session_seq: r * 100 + Math.floor(i / 200) + 1, type: 'dev.sluice.command.decided', kind: 'command.decided', source: 'proxy', time: new Date(),
  data: { commandId: crypto.randomUUID(), resource: 'shop-db', protocol: 'postgres', command: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1', action: 'read', risk: 'low', decision: 'allow', rule: 'support-read', reason: 'allowed by support-read' },
  ext: { specversion: '1.0', datacontenttype: 'application/json' }, hash: 'a'.repeat(64), prev_hash: 'b'.repeat(64), resource: 'shop-db', subject_sub: null, command_id: 'c' + i, approval_id: null, decision: 'allow', masked_values: 0 }));
const cols = 'id, session_id, session_seq, type, kind, source, time, data, ext, hash, prev_hash, resource, subject_sub, command_id, approval_id, decision, masked_values';
for (const t of ['u1', 'j1', 'u2', 'j2']) { await c.query(`drop table if exists ${t}`); await c.query(`create table ${t} (like ev including defaults including indexes)`); }
const unnestQ = (t, rows) => { const col = (k) => rows.map((r) => r[k]); const j = (k) => rows.map((r) => (r[k] === null ? null : JSON.stringify(r[k])));
  return c.query(`INSERT INTO ${t} (${cols}) SELECT ${cols.replace('data, ext', 'data::jsonb, ext::jsonb')} FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::int[]) WITH ORDINALITY AS u(${cols}, ord) ORDER BY u.ord`,
   [col('id'), col('session_id'), col('session_seq'), col('type'), col('kind'), col('source'), col('time'), j('data'), j('ext'), col('hash'), col('prev_hash'), col('resource'), col('subject_sub'), col('command_id'), col('approval_id'), col('decision'), col('masked_values')]); };
const jsonQ = (t, rows, fn) => c.query(`INSERT INTO ${t} (${cols}) SELECT ${cols} FROM ROWS FROM (${fn}($1::${fn.startsWith('jsonb') ? 'jsonb' : 'json'}) AS (id text, session_id text, session_seq int, type text, kind text, source text, time timestamptz, data jsonb, ext jsonb, hash text, prev_hash text, resource text, subject_sub text, command_id text, approval_id text, decision text, masked_values int)) WITH ORDINALITY AS u ORDER BY u.ordinality`, [JSON.stringify(rows)]);
const jsonQ2 = (t, rows) => c.query(`INSERT INTO ${t} (${cols}) SELECT ${cols} FROM json_populate_recordset(NULL::${t}, $1::json)`, [JSON.stringify(rows)]);
const batches = Array.from({ length: R }, (_, r) => mk(r));
const methods = [['unnest', (t, b) => unnestQ(t, b)], ['json_to_recordset', (t, b) => jsonQ(t, b, 'json_to_recordset')], ['jsonb_to_recordset', (t, b) => jsonQ(t, b, 'jsonb_to_recordset')], ['json_populate', (t,b)=>jsonQ2(t,b)]];
const times = methods.map(() => []);
for (const [r, b] of batches.entries()) for (const [m, [, fn]] of methods.entries()) { const t0 = performance.now(); await fn('u1', mk(r)); times[m].push(performance.now() - t0); }
for (const [m, [name]] of methods.entries()) { const s = times[m].sort((a, b) => a - b); console.log(name.padEnd(20), 'min', (s[0] / N * 1000).toFixed(1), 'median', (s[s.length >> 1] / N * 1000).toFixed(1), 'µs/event'); }
await c.end();
