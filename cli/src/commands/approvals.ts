import { parseArgs } from 'node:util';
import { resolveCliConfig } from '../config-resolution.js';
import { apiBaseUrl } from '@sluice/config';
import { SluiceError, SluiceErrorCode, visibleControls } from '@sluice/contracts';

export const USAGE = `usage: sluice approvals list [--status pending|granted|denied|expired|cancelled|executed|all] [--json | -q]
       sluice approve <id> [--reason R]
       sluice deny <id> [--reason R]
options: -q prints only the ids (ID=$(sluice approvals list -q))
         --token T (or $SLUICE_TOKEN): the approver's OIDC access token
         --config FILE, --url URL: where the approval service is (default services.approval.http)
`;

interface ApprovalJson {
  readonly id: string;
  readonly status: string;
  readonly resource: string;
  readonly subject: string;
  readonly requester?: { readonly issuer?: string };
  readonly command: string;
  readonly commandHash: string;
  readonly risk: string;
  readonly rule: string;
  readonly expiresAt: string;
  /** The agent's own words, if it gave any. */
  readonly justification?: string | null;
  readonly decisions?: readonly { approver: string; decision: string; reason: string }[];
}

interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

const defaultIo: Io = { out: (text) => process.stdout.write(text), err: (text) => process.stderr.write(text) };

class CliFailure extends SluiceError {
  readonly code = SluiceErrorCode.CliFailed;
  override readonly expose = true;
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

const describeProblem = async (response: Response): Promise<string> => {
  const text = await response.text();
  try {
    const problem = JSON.parse(text) as { title?: string; code?: string };
    return oneLine(`${response.status} ${problem.title ?? response.statusText}${problem.code ? ` (${problem.code})` : ''}`, 300);
  } catch {
    return `${response.status} ${response.statusText}`;
  }
};

/**
 * Every text the service returns is the agent's, another approver's or the IdP's: printed as one
 * line with its controls made visible (a command can carry ESC sequences that would rewrite the
 * approver's terminal, e.g. hide the real command behind a harmless one).
 */
const oneLine = (text: string, width = Number.POSITIVE_INFINITY): string => {
  const flat = visibleControls(String(text).replace(/\s+/g, ' ').trim());
  return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat;
};

const table = (rows: readonly (readonly string[])[]): string => {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n') + '\n';
};

const describeApproval = (approval: ApprovalJson): string => {
  const decisions = (approval.decisions ?? []).map((decision) => oneLine(`${decision.decision} by ${decision.approver}${decision.reason ? ` (${decision.reason})` : ''}`));
  return [
    oneLine(`approval ${approval.id}: ${approval.status}`),
    `  ${oneLine(`${approval.subject}${approval.requester?.issuer ? ` (from ${approval.requester.issuer})` : ''} on ${approval.resource}, ${approval.risk} risk, rule ${approval.rule}`)}`,
    `  command: ${oneLine(approval.command, 200)}`,
    ...(approval.justification ? [`  agent's justification: ${oneLine(approval.justification, 200)}`] : []),
    `  hash:    ${oneLine(approval.commandHash)}`,
    ...decisions.map((decision) => `  ${decision}`),
  ].join('\n') + '\n';
};

/**
 * `sluice approvals list`, `sluice approve <id>`, `sluice deny <id>`: the decision API of the
 * approval service, called with the approver's own token. Exit 0 on success, 1 when the service
 * refuses or cannot be reached, 2 on a usage error.
 */
export const run = async (argv: readonly string[], io: Io = defaultIo): Promise<number> => {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        token: { type: 'string' },
        reason: { type: 'string', short: 'r' },
        config: { type: 'string', short: 'c' },
        url: { type: 'string' },
        status: { type: 'string' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean', short: 'q' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    io.err(`sluice: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values } = parsed;
  const positionals = parsed.positionals[0] === 'approvals' ? parsed.positionals.slice(1) : parsed.positionals;
  const [verb, id] = positionals;
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  if (verb !== 'list' && verb !== 'approve' && verb !== 'deny') {
    io.err(USAGE);
    return 2;
  }
  if (verb !== 'list' && !id?.trim()) {
    io.err(`sluice: ${verb} needs the approval id\n${USAGE}`);
    return 2;
  }
  // `sluice approve "$(sluice approvals list -q)"` with two requests pending passes both ids as one.
  const ids = id?.trim().split(/\s+/) ?? [];
  if (ids.length > 1) {
    io.err(`sluice: ${verb} takes one approval id, got ${ids.length}: ${ids.map((one) => oneLine(one, 40)).join(', ')} (sluice approvals list shows which is which)\n`);
    return 2;
  }
  const token = values.token ?? process.env.SLUICE_TOKEN;
  if (!token) {
    io.err('sluice: an approver token is required: --token T or SLUICE_TOKEN\n');
    return 2;
  }
  const base = (values.url ?? apiBaseUrl(resolveCliConfig(argv).config.services.approval)).replace(/\/$/, '');
  const headers = { authorization: `Bearer ${token}`, accept: 'application/json', 'x-sluice-client': 'cli' };

  const call = async (path: string, init: RequestInit = {}): Promise<unknown> => {
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, { ...init, headers: { ...headers, ...(init.headers as Record<string, string> | undefined) }, signal: AbortSignal.timeout(15_000) });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
      throw new CliFailure(`the approval service at ${base} cannot be reached (${cause})`, 1);
    }
    if (!response.ok) throw new CliFailure(await describeProblem(response), 1);
    return response.json();
  };

  try {
    if (verb === 'list') {
      const status = values.status ?? 'pending';
      const query = status === 'all' ? '' : `?status=${encodeURIComponent(status)}`;
      const { approvals } = (await call(`/v1/approvals${query}`)) as { approvals: ApprovalJson[] };
      if (values.json) io.out(JSON.stringify(approvals, null, 2) + '\n');
      else if (values.quiet) io.out(approvals.map((approval) => `${oneLine(approval.id)}\n`).join(''));
      else if (approvals.length === 0) io.out(`no ${status === 'all' ? '' : `${status} `}approvals\n`);
      else {
        io.out(
          table([
            ['ID', 'STATUS', 'RESOURCE', 'AGENT', 'RISK', 'RULE', 'EXPIRES', 'HASH', 'COMMAND'],
            ...approvals.map((approval) =>
              [
                oneLine(approval.id),
                oneLine(approval.status),
                oneLine(approval.resource),
                oneLine(approval.subject),
                oneLine(approval.risk),
                oneLine(approval.rule),
                oneLine(approval.expiresAt),
                oneLine(approval.commandHash.slice(0, 12)),
                oneLine(approval.command, 60),
              ],
            ),
          ]),
        );
      }
      return 0;
    }
    const approval = (await call(`/v1/approvals/${encodeURIComponent(ids[0]!)}/decision`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ decision: verb, reason: values.reason ?? '' }),
    })) as ApprovalJson;
    io.out(values.json ? JSON.stringify(approval, null, 2) + '\n' : describeApproval(approval));
    return 0;
  } catch (error) {
    if (error instanceof CliFailure) {
      io.err(`sluice: ${error.message}\n`);
      return error.exitCode;
    }
    throw error;
  }
};
