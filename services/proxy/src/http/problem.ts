import type { ServerResponse } from 'node:http';

/** An RFC 9457 problem answered to the agent. */
export class Problem {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {}
}

const PROBLEM_BASE = 'https://sluice.dev/problems/';

export const sendProblem = (res: ServerResponse, problem: Problem, requestId: string): void => {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({
    type: `${PROBLEM_BASE}${problem.code.toLowerCase().replace(/^err_/, '').replace(/_/g, '-')}`,
    title: problem.title,
    status: problem.status,
    detail: problem.detail,
    code: problem.code,
    requestId,
    ...problem.extra,
  });
  res.writeHead(problem.status, {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...problem.headers,
  });
  res.end(body);
};
