import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlClassifier } from './classify.js';
import { clientEncodingReport } from './client-encoding-statement.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

const PATH = ['pg_catalog', 'public'];

describe('clientEncodingReport', () => {
  it('finds SHOW client_encoding and SHOW ALL', () => {
    expect(clientEncodingReport('SHOW client_encoding', PATH)).toEqual({ show: 'setting' });
    expect(clientEncodingReport('show all', PATH)).toEqual({ show: 'all' });
  });

  it("finds the output columns that are current_setting('client_encoding') itself, pg_catalog's", () => {
    expect(clientEncodingReport("select 1, current_setting('client_encoding'), pg_catalog.current_setting('CLIENT_ENCODING', true) as e from t", PATH)).toEqual({ currentSetting: [1, 2] });
    // Pg_catalog searched after a schema of the agent's: an unqualified name may be its function.
    expect(clientEncodingReport("select current_setting('client_encoding')", ['public', 'pg_catalog'])).toBeUndefined();
    expect(clientEncodingReport("select public.current_setting('client_encoding')", PATH)).toBeUndefined();
  });

  it('leaves alone what it cannot place: a value computed from it, a * before it, set operations, several statements', () => {
    expect(clientEncodingReport("select lower(current_setting('client_encoding'))", PATH)).toBeUndefined();
    expect(clientEncodingReport("select *, current_setting('client_encoding') from t", PATH)).toBeUndefined();
    expect(clientEncodingReport("select current_setting('client_encoding') union select 'x'", PATH)).toBeUndefined();
    expect(clientEncodingReport("select current_setting('client_encoding'); select 1", PATH)).toBeUndefined();
    expect(clientEncodingReport("select current_setting('server_encoding')", PATH)).toBeUndefined();
  });

  it("finds a SELECT reading pg_catalog's pg_settings alone, and whether its WHERE keeps client_encoding's row alone", () => {
    expect(clientEncodingReport('select * from pg_settings', PATH)).toEqual({ settings: { onlyClientEncoding: false } });
    expect(clientEncodingReport("select setting, reset_val from pg_catalog.pg_settings s where s.name = 'client_encoding' and true", PATH)).toEqual({ settings: { onlyClientEncoding: true } });
    expect(clientEncodingReport("select setting from pg_settings where 'client_encoding' = name", PATH)).toEqual({ settings: { onlyClientEncoding: true } });
    expect(clientEncodingReport("select setting from pg_settings where name = 'client_encoding' or true", PATH)).toEqual({ settings: { onlyClientEncoding: false } });
    // Another relation, a subquery, or a pg_settings that may be another schema's (pg_temp is searched first for relations).
    expect(clientEncodingReport('select s.setting from pg_settings s join t on true', PATH)).toBeUndefined();
    expect(clientEncodingReport('select setting from pg_settings where name in (select n from t)', PATH)).toBeUndefined();
    expect(clientEncodingReport('select setting from pg_settings', ['pg_temp_3', 'pg_catalog', 'public'])).toBeUndefined();
    expect(clientEncodingReport('select setting from public.pg_settings', PATH)).toBeUndefined();
  });
});
