import type { IncomingMessage } from 'node:http';
import { JUSTIFICATION_HEADER } from '../justification.js';

/** Hop-by-hop headers (RFC 9110 §7.6.1) and what Sluice owns: never forwarded either way. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  JUSTIFICATION_HEADER,
  // Answered by this hop (node:http sends 100 Continue itself); undici refuses to send it on.
  'expect',
]);

/**
 * Method-override headers: frameworks let them replace the request method, so a GET decided as
 * a read could run as a DELETE. They never reach the target.
 */
export const METHOD_OVERRIDE_HEADERS = new Set(['x-http-method-override', 'x-method-override', 'x-http-method']);

/** Path-override headers: some frameworks (Symfony, IIS rewrite) route by them instead of the request line. */
export const PATH_OVERRIDE_HEADERS = new Set(['x-original-url', 'x-rewrite-url', 'x-override-url']);

/** A Host header value: a name, IPv4 or [IPv6], and an optional port; nothing else. */
const HOST_HEADER = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * Why a request's framing or target is ambiguous, or undefined. Another hop (or the target)
 * could read such a request differently from Sluice (request smuggling, absolute-form targets,
 * Host tricks), so it is refused before anything else. node:http already refuses obs-fold,
 * Transfer-Encoding with Content-Length, duplicate Content-Length and oversized headers.
 */
export const ambiguityOf = (req: IncomingMessage): string | undefined => {
  const url = req.url ?? '';
  if (!url.startsWith('/')) return 'the request target must be a path (origin-form)';
  const counts = new Map<string, number>();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  for (const name of ['host', 'content-length', 'transfer-encoding']) {
    if ((counts.get(name) ?? 0) > 1) return `more than one ${name} header`;
  }
  const host = req.headers.host;
  if (host !== undefined && !HOST_HEADER.test(host)) return 'malformed Host header';
  const transferEncoding = req.headers['transfer-encoding'];
  if (transferEncoding !== undefined) {
    if (req.headers['content-length'] !== undefined) return 'both Transfer-Encoding and Content-Length';
    if (transferEncoding.trim().toLowerCase() !== 'chunked') return 'a Transfer-Encoding other than chunked';
  }
  if (req.httpVersion !== '1.1') {
    if (req.httpVersion !== '1.0') return `HTTP/${req.httpVersion} is not supported`;
    const connection = (req.headers.connection ?? '').toLowerCase().split(',').map((token) => token.trim());
    if (connection.includes('keep-alive')) return 'HTTP/1.0 keep-alive is not supported';
    if (transferEncoding !== undefined) return 'Transfer-Encoding in an HTTP/1.0 request';
  }
  const query = url.indexOf('?');
  if (query >= 0 && overridesMethod(url.slice(query + 1))) return 'a _method override in the query';
  return undefined;
};

/**
 * Does a query string carry a `_method` parameter, as any framework could read it: names
 * percent-decoded (repeatedly: some decode twice), `+` as a space, `&` or `;` between parameters.
 */
const overridesMethod = (query: string): boolean => {
  let text = query.replace(/\+/g, ' ');
  for (let round = 0; round < 3; round++) {
    const decoded = text.replace(/%([0-9a-fA-F]{2})/g, (_escape, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    if (decoded === text) break;
    text = decoded;
  }
  return /(?:^|[&;])\s*_method\s*(?:[=&;[]|$)/i.test(text);
};
