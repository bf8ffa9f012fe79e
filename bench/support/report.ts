import type { AuditCatchUp } from '../../test/support/audit-keeps-up.js';
import { IDLE_SESSION_TARGET_KIB, type IdleSessionsResult } from './idle-sessions.js';
import type { Machine } from './machine.js';
import { renderProfiles, type WorkloadProfile } from './profiling.js';
import type { LatencyResult, LoadSample } from './samples.js';
import { median } from './stats.js';
import type { Verdict } from './verdict.js';

/**
 * The busy rule: a run that starts with the 1-minute load average above half the CPUs shares them
 * with other work, so its figures understate every path and are not comparable with a quiet run.
 */
export const wasBusy = (startLoad: number, nproc: number): boolean => startLoad > nproc * 0.5;

/** Issue 2's target: at most this much added at the median for a simple SELECT once decisions are cached. */
export const ADDED_LATENCY_TARGET_US = 150;

const PATH_ORDER = ['direct', 'pgbouncer', 'node-pipe', 'sluice'];
const byPathOrder = (a: string, b: string) => (PATH_ORDER.indexOf(a) + 1 || 99) - (PATH_ORDER.indexOf(b) + 1 || 99);

const distinct = <T>(values: readonly T[]): T[] => [...new Set(values)];

export const formatCount = (value: number | undefined): string =>
  value === undefined ? '—' : Math.round(value).toLocaleString('en-US');

export const formatMicros = (us: number | undefined, signed = false): string => {
  if (us === undefined || !Number.isFinite(us)) return '—';
  const sign = signed && us >= 0 ? '+' : '';
  return Math.abs(us) >= 1000 ? `${sign}${(us / 1000).toFixed(2)} ms` : `${sign}${Math.round(us)} µs`;
};

export const formatRatio = (ratio: number | undefined): string => (ratio === undefined ? '—' : ratio.toFixed(2));

const table = (header: readonly string[], rows: readonly (readonly string[])[]): string =>
  [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((row) => `| ${row.join(' | ')} |`)].join('\n');

/** Per round, `value(path) - value(direct)` or `value(path) / value(direct)`; the median over rounds. */
const againstDirect = <S extends { path: string; round: number }>(
  samples: readonly S[],
  path: string,
  value: (sample: S) => number | undefined,
  compare: (mine: number, direct: number) => number,
): number | undefined =>
  median(
    samples
      .filter((sample) => sample.path === path)
      .map((sample) => {
        const direct = samples.find((other) => other.path === 'direct' && other.round === sample.round);
        const mine = value(sample);
        const base = direct ? value(direct) : undefined;
        return mine === undefined || base === undefined ? undefined : compare(mine, base);
      }),
  );

const firstError = (samples: readonly { error?: string }[]): string | undefined => samples.find((sample) => sample.error)?.error;

/** Medians over rounds of each path's median and p99, and what each path adds to direct. */
export const renderLatencyTable = (rounds: readonly (readonly LatencyResult[])[]): string => {
  const samples = rounds.flatMap((results, index) => results.map((result) => ({ ...result, round: index + 1 })));
  const rows: string[][] = [];
  for (const query of distinct(samples.map((sample) => sample.query))) {
    const ofQuery = samples.filter((sample) => sample.query === query);
    for (const path of distinct(ofQuery.map((sample) => sample.path)).sort(byPathOrder)) {
      const ofPath = ofQuery.filter((sample) => sample.path === path);
      const error = ofPath.every((sample) => sample.error) ? firstError(ofPath) : undefined;
      if (error) {
        rows.push([query, path, `failed: ${error.split('\n')[0]!.slice(0, 120)}`, '', '', '']);
        continue;
      }
      const direct = path === 'direct';
      rows.push([
        query,
        path,
        formatMicros(median(ofPath.map((sample) => sample.medianUs))),
        formatMicros(median(ofPath.map((sample) => sample.p99Us))),
        direct ? '—' : formatMicros(againstDirect(ofQuery, path, (sample) => sample.medianUs, (mine, base) => mine - base), true),
        direct ? '—' : formatMicros(againstDirect(ofQuery, path, (sample) => sample.p99Us, (mine, base) => mine - base), true),
      ]);
    }
  }
  return table(['statement', 'path', 'median', 'p99', 'added at the median', 'added at p99'], rows);
};

/** One sentence: does Sluice meet issue 2's ≤ 150 µs added at the median for `SELECT 1`? */
export const latencyVerdict = (rounds: readonly (readonly LatencyResult[])[]): string => {
  const samples = rounds.flatMap((results, index) => results.map((result) => ({ ...result, round: index + 1 }))).filter((sample) => sample.query === 'SELECT 1');
  const added = againstDirect(samples, 'sluice', (sample) => sample.medianUs, (mine, base) => mine - base);
  const pipe = againstDirect(samples, 'node-pipe', (sample) => sample.medianUs, (mine, base) => mine - base);
  if (added === undefined) return `Target (≤ ${ADDED_LATENCY_TARGET_US} µs added at the median for \`SELECT 1\`): not measured, the Sluice path did not run.`;
  const own = pipe === undefined ? '' : ` (a bare Node byte pipe adds ${formatMicros(pipe)}, so Sluice's own share is ${formatMicros(added - pipe)})`;
  return `Target (≤ ${ADDED_LATENCY_TARGET_US} µs added at the median for \`SELECT 1\`): ${added <= ADDED_LATENCY_TARGET_US ? 'met' : 'not met'}, Sluice adds ${formatMicros(added)}${own}.`;
};

/** One table per benchmark: throughput, ratio and added latency against direct in the same round, CPU per operation. */
export const renderLoadTable = (samples: readonly LoadSample[]): string => {
  const first = samples[0];
  if (!first) return '';
  const withPercentiles = samples.some((sample) => sample.figures?.p99Ms !== undefined);
  const rows: string[][] = [];
  // Ratios and added latency pair each path's round with direct's round: only runs that worked.
  const worked = samples.filter((sample) => !sample.error && sample.figures?.throughput !== undefined);
  for (const path of distinct(samples.map((sample) => sample.path)).sort(byPathOrder)) {
    const ofPath = samples.filter((sample) => sample.path === path);
    const usable = ofPath.filter((sample) => !sample.error && sample.figures?.throughput !== undefined);
    if (usable.length === 0) {
      rows.push([path, `failed: ${(firstError(ofPath) ?? 'no figures').split('\n')[0]!.slice(0, 140)}`, ...Array<string>(withPercentiles ? 6 : 5).fill('')]);
      continue;
    }
    const direct = path === 'direct';
    const latencyUs = (sample: LoadSample) => (sample.figures?.latencyMs === undefined ? undefined : sample.figures.latencyMs * 1000);
    const p99Us = (sample: LoadSample) => (sample.figures?.p99Ms === undefined ? undefined : sample.figures.p99Ms * 1000);
    const cpuPerOp = (pick: 'proxyUs' | 'allUs') =>
      median(usable.map((sample) => (sample.cpu && sample.figures?.operations ? sample.cpu[pick] / sample.figures.operations : undefined)));
    const unstable = usable.some((sample) => sample.cpu && !sample.cpu.stable) ? ' (a process restarted)' : '';
    const failures = usable.reduce((sum, sample) => sum + (sample.figures?.failures ?? 0), 0);
    const row = [
      path + (usable.length < ofPath.length ? ` (${usable.length}/${ofPath.length} rounds)` : ''),
      formatCount(median(usable.map((sample) => sample.figures?.throughput))) + (failures > 0 ? ` (${formatCount(failures)} failed)` : ''),
      direct ? '1.00' : formatRatio(againstDirect(worked, path, (sample) => sample.figures?.throughput, (mine, base) => mine / base)),
      formatMicros(median(usable.map(latencyUs))),
      direct ? '—' : formatMicros(againstDirect(worked, path, latencyUs, (mine, base) => mine - base), true),
    ];
    if (withPercentiles) row.push(formatMicros(median(usable.map(p99Us))));
    row.push(direct ? '—' : formatMicros(cpuPerOp('proxyUs')) + unstable, direct || path !== 'sluice' ? '—' : formatMicros(cpuPerOp('allUs')));
    rows.push(row);
  }
  const header = ['path', first.unit, 'ratio to direct', 'mean latency', 'added latency'];
  if (withPercentiles) header.push('p99 latency');
  header.push(`proxy CPU per ${first.operation}`, `all Sluice processes' CPU per ${first.operation}`);
  return table(header, rows);
};

export interface ReportInput {
  readonly machine: Machine;
  readonly settings: Readonly<Record<string, string | number>>;
  readonly rounds: number;
  readonly latency: readonly (readonly LatencyResult[])[];
  readonly load: readonly LoadSample[];
  readonly problems: readonly string[];
  /** The audit keeps-up check after each round's pgbench -S -c N through Sluice. */
  readonly auditKeepsUp?: readonly (AuditCatchUp & { readonly round: number; readonly load?: string })[];
  /** The proxy's resident memory per idle authenticated session. */
  readonly idleSessions?: readonly IdleSessionsResult[];
  readonly components: readonly { name: string; output: string }[];
  readonly elapsedSeconds: number;
  /** 1-minute load averages at the start and the end: other work on the machine skews every figure. */
  readonly loadAverage: { readonly start: number; readonly end: number };
  /** Issue 12's targets, judged from this run. */
  readonly verdict?: Verdict;
  /** The profiling pass's findings for each gap. */
  readonly profiles?: readonly WorkloadProfile[];
}

/** The bare Node.js pipe's pgbench -S figures beside the bounds they put in perspective. */
const renderNodePipeFloor = (verdict: Verdict): string | undefined => {
  if (verdict.nodePipe.length === 0) return undefined;
  const parts = verdict.nodePipe.map(
    (floor) =>
      `${floor.protocol} protocol: the pipe reaches ${formatRatio(floor.ofDirect)} of direct` +
      `${floor.cpuUs === undefined ? '' : ` at ${formatMicros(floor.cpuUs)} of CPU per transaction`}` +
      `${floor.sluiceOfPipe === undefined ? '' : `, and Sluice ${formatRatio(floor.sluiceOfPipe)} of the pipe`}`,
  );
  const below = verdict.nodePipe.filter((floor) => floor.ofDirect < 0.45).map((floor) => floor.protocol);
  const cheaper = verdict.nodePipe.filter((floor) => floor.cpuUs !== undefined && floor.cpuUs > 25).map((floor) => floor.protocol);
  return [
    `For scale, a bare Node.js TCP pipe in the same rounds (\`node-pipe\`: setNoDelay, no parsing, no policy, no recording), pgbench -S: ${parts.join('; ')}.`,
    below.length > 0 ? ` The pipe alone stays under the 0.45-of-direct bound (${below.join(', ')}).` : '',
    cheaper.length > 0 ? ` Its CPU per transaction alone is above the proxy's 25 µs bound (${cheaper.join(', ')}).` : '',
  ].join('');
};

/** The report's first section: one row per target of issue 12, then the profile of every gap. */
export const renderTargets = (verdict: Verdict, profiles: readonly WorkloadProfile[] = []): string => {
  const verdictCell = (status: string) => (status === 'GAP' ? '**GAP**' : status);
  const lines = [
    '## Targets (issue 12)',
    '',
    verdict.comparable
      ? `**${verdict.met} of ${verdict.rows.length} targets met**${verdict.gaps > 0 ? `, ${verdict.gaps} GAP${verdict.gaps === 1 ? '' : 's'}` : ''}${verdict.notMeasured > 0 ? `, ${verdict.notMeasured} not measured` : ''}.`
      : `**Not comparable: the machine was busy when this run started** (see the load average below), so every figure understates Sluice; the verdicts are shown for information only (${verdict.met} of ${verdict.rows.length} met, ${verdict.gaps} GAP${verdict.gaps === 1 ? '' : 's'}${verdict.notMeasured > 0 ? `, ${verdict.notMeasured} not measured` : ''}).`,
    '',
    table(
      ['target', 'bound', 'measured', 'verdict', 'how far'],
      verdict.rows.map((row) => [`${row.target} (\`${row.id}\`)`, row.goal, row.measured, verdict.comparable ? verdictCell(row.status) : `${verdictCell(row.status)} (not comparable)`, row.howFar]),
    ),
    '',
  ];
  const floor = renderNodePipeFloor(verdict);
  if (floor) lines.push(floor, '');
  // A CPU profile does not explain memory: that gap points at its own table.
  if (verdict.rows.some((row) => row.status === 'GAP' && row.id === 'memory'))
    lines.push('`memory`: no CPU profile explains it; see "Memory per idle session" below (VmRSS before and after, per protocol).', '');
  const profiled = renderProfiles(profiles);
  if (profiled) lines.push(profiled, '');
  else if (verdict.gaps > 0) lines.push('No profile of the gaps in this run (`--only` left the `profile` part out, or it failed: see What failed).', '');
  return lines.join('\n');
};

const SECTION_TITLES = { postgres: 'PostgreSQL: pgbench', redis: 'Redis: redis-benchmark', http: 'HTTP: wrk' } as const;

/** bench/results/latest.md: what ran, on what, how, and the figures. */
export const renderReport = (input: ReportInput): string => {
  const { machine } = input;
  const lines: string[] = [
    '# Sluice benchmark figures (latest run)',
    '',
    `Measured ${machine.date} by \`bench/run.ts\` in ${Math.round(input.elapsedSeconds)} s: ${input.rounds} interleaved round${input.rounds === 1 ? '' : 's'}; every figure is the median over rounds, every ratio and added latency is against the direct path in the same round.`,
    '',
    ...(input.verdict ? [renderTargets(input.verdict, input.profiles)] : []),
    `Machine: ${machine.nproc} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB RAM, ${machine.os}, Linux ${machine.kernel}. The load generator, the proxy and the servers share these CPUs.`,
    '',
    `Load average (1 min): ${input.loadAverage.start.toFixed(2)} at the start, ${input.loadAverage.end.toFixed(2)} at the end (the end includes the run's own load)${
      wasBusy(input.loadAverage.start, machine.nproc)
        ? ` — **the machine was busy with other work when this run started, so these figures understate every path and are not comparable with a quiet run; compare ratios within a round rather than absolute rates**`
        : ''
    }.`,
    '',
    `Versions: ${Object.entries(machine.versions).map(([name, version]) => `${name} ${version}`).join('; ')}.`,
    '',
    `Settings: ${Object.entries(input.settings).map(([name, value]) => `${name} ${value}`).join(', ')}.`,
    '',
    'Paths: `direct` is the server itself; `pgbouncer` is pgbouncer in session mode; `node-pipe` is a bare Node.js TCP pipe with setNoDelay (the floor of any Node proxy); `sluice` is `sluice up` with the agent\'s OIDC token as the credential, every statement parsed and decided by policy, results masked with a profile of all detectors, every action recorded on JetStream and in the PostgreSQL event store. CPU is user+system time from /proc/<pid>/stat of the proxy process (and of all Sluice processes: supervisor, proxy, policy, masking, approval, audit) over the run, and for Sluice on until the event store has stored the run\'s events, divided by the operations completed.',
    '',
  ];
  if (input.latency.length > 0) {
    lines.push('## PostgreSQL: added latency of one statement (node-postgres, sequential, simple protocol)', '');
    lines.push(renderLatencyTable(input.latency), '', latencyVerdict(input.latency), '');
  }
  for (const section of ['postgres', 'redis', 'http'] as const) {
    const ofSection = input.load.filter((sample) => sample.section === section);
    if (ofSection.length === 0) continue;
    lines.push(`## ${SECTION_TITLES[section]}`, '');
    for (const bench of distinct(ofSection.map((sample) => sample.bench))) {
      lines.push(`### ${bench}`, '', renderLoadTable(ofSection.filter((sample) => sample.bench === bench)), '');
    }
  }
  if (input.auditKeepsUp && input.auditKeepsUp.length > 0) {
    lines.push(
      '## The audit keeps up',
      '',
      'After each round\'s pgbench select-only runs through Sluice (simple and extended protocol): every statement recorded in the event store with its outcome (one `command.executed`, or `command.decided` + `command.completed`), none doubled, within 2 s of the end of the run.',
      '',
      table(
        ['round', 'load', 'statements (pgbench)', 'recorded', 'doubled', 'all stored after', 'verdict'],
        input.auditKeepsUp.map((check) => [
          check.round === 0 ? 'after the rounds' : String(check.round),
          check.load ?? 'pgbench -S',
          formatCount(check.expected),
          formatCount(check.recorded),
          String(check.doubled),
          check.caughtUpMs === undefined ? `not within ${check.withinMs} ms` : `${check.caughtUpMs} ms`,
          check.ok ? 'keeps up' : '**does not keep up**',
        ]),
      ),
      '',
    );
  }
  const backlogs = input.load.filter((sample) => sample.path === 'sluice' && sample.auditBacklogMs !== undefined);
  if (backlogs.length > 0) {
    lines.push(
      '## The audit\'s backlog after each load',
      '',
      'How long after each load through Sluice ended the event store went on storing its events (until no new event for 300 ms; polled every 300 ms, so a figure near 300 ms means the events were still arriving at the first poll). The next measurement waits for it, and the CPU figures of the load run until then, so they include storing its events.',
      '',
      table(
        ['load', 'round', 'events still being stored for'],
        backlogs.map((sample) => [sample.bench, String(sample.round), `${formatCount(sample.auditBacklogMs)} ms`]),
      ),
      '',
    );
  }
  if (input.idleSessions && input.idleSessions.length > 0) {
    lines.push(
      '## Memory per idle session',
      '',
      `Sessions logged in with the agent's token and left idle; the proxy's resident memory (VmRSS, the median of five samples after 3 s still) before and after, divided by the sessions opened. An upper bound: the garbage of the logins counts too. Target: <= ${IDLE_SESSION_TARGET_KIB} KiB per session at 2,000 sessions.`,
      '',
      table(
        ['protocol', 'sessions', 'proxy RSS before', 'after', 'per session', 'verdict'],
        input.idleSessions.map((measured) => [
          measured.protocol,
          `${formatCount(measured.opened)}${measured.limitedBy ? ` (${measured.limitedBy})` : ''}`,
          `${formatCount(measured.rssBeforeKiB)} KiB`,
          `${formatCount(measured.rssAfterKiB)} KiB`,
          `${measured.perSessionKiB.toFixed(1)} KiB`,
          measured.error ? `**stopped: ${measured.error}**` : measured.perSessionKiB <= IDLE_SESSION_TARGET_KIB ? 'met' : '**not met**',
        ]),
      ),
      '',
    );
  }
  if (input.problems.length > 0) {
    lines.push('## What failed', '');
    for (const problem of input.problems) lines.push('```', problem.trim().split('\n').slice(0, 40).join('\n'), '```', '');
  }
  if (input.components.length > 0) {
    lines.push('## Component micro-benchmarks', '');
    for (const component of input.components) lines.push(`### ${component.name}`, '', '```', component.output.trim(), '```', '');
  }
  return `${lines.join('\n').trimEnd()}\n`;
};
