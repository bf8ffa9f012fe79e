import { parseConfig } from '@sluice/config';
import type { PostgresFrontDoorOptions } from './postgres-proxy-harness.js';

/**
 * The database the search_path specs attack: public.t and other.t, a deny on other.t, and code
 * that moves the path without showing it (public.setpath, a trigger on public.log that calls it,
 * the view public.sets_path); public.plain is a table without a trigger. An agent in `all` may
 * do everything else.
 */
export const searchPathFrontDoorOptions = (resource: string, database: string, hashKey: string): PostgresFrontDoorOptions => ({
  config: parseConfig({
    resources: [{ name: resource, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
    rules: [
      { name: 'everything', effect: 'allow', subjects: { groups: ['all'] }, resources: [resource], actions: ['read', 'write', 'ddl', 'admin'] },
      { name: 'not-the-other-t', effect: 'deny', tables: ['other.t'] },
    ],
  }),
  database,
  hashKey,
  setupSql: `create schema other;
    create table public.t (v text); insert into public.t values ('public');
    create table other.t (v text); insert into other.t values ('other');
    create function public.setpath(p text) returns text language sql as $$ select pg_catalog.set_config('search_path', p, false) $$;
    create table public.log (p text);
    create function public.log_sets_path() returns trigger language plpgsql as $$ begin perform public.setpath(new.p); return new; end $$;
    create trigger log_sets_path before insert on public.log for each row execute function public.log_sets_path();
    create table public.plain (p text);
    create view public.sets_path as select public.setpath('other, public') as path;`,
});
