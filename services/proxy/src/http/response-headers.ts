import type { MaskCounts, ProfileMasker } from '@sluice/masking-engine';
import { columnNamed } from '../named-values.js';
import { maskString } from '../redis/reply-masking.js';

/**
 * Response headers passed as they are (reviewed: they describe the body or its caching and carry
 * no data of their own). Every other response header value is masked like the body.
 */
const UNMASKED_RESPONSE_HEADERS = new Set([
  'content-type',
  'content-length',
  'content-encoding',
  'content-language',
  'content-range',
  'accept-ranges',
  'date',
  'etag',
  'last-modified',
  'expires',
  'age',
  'cache-control',
  'pragma',
  'vary',
  'retry-after',
  'x-content-type-options',
]);

/**
 * Masks response header values in place, like body values: a header named like a covered column
 * (x-user-ssn) is masked whole, any other value is scanned by the detectors (an email in a
 * Location). A value masked to nothing drops the header.
 */
export const maskResponseHeaders = (headers: Record<string, string | string[]>, masker: ProfileMasker, counts: MaskCounts): void => {
  for (const [name, value] of Object.entries(headers)) {
    if (UNMASKED_RESPONSE_HEADERS.has(name)) continue;
    const values = (Array.isArray(value) ? value : [value]).flatMap((one) => {
      const masked = maskString(maskNamedParts(name, one, masker, counts), masker, counts, name);
      // A masked value a header cannot carry (control characters, beyond Latin-1) is dropped.
      return masked === null || /[^\t\x20-\x7e\x80-\xff]/.test(masked) ? [] : [masked];
    });
    if (values.length === 0) delete headers[name];
    else headers[name] = Array.isArray(value) ? values : values[0]!;
  }
};

/**
 * Values a header carries under names of their own, masked by the column rule of that name: a
 * cookie (`Set-Cookie: ssn=…`) and the query parameters of a URL (`Location: /next?ssn=…`).
 */
const maskNamedParts = (header: string, value: string, masker: ProfileMasker, counts: MaskCounts): string => {
  if (masker.columnRuleCount === 0) return value;
  const covered = (name: string, raw: string): string => {
    let decodedName = name;
    try {
      decodedName = decodeURIComponent(name.replace(/\+/g, ' '));
    } catch {
      // An undecodable name is matched as it is.
    }
    const column = columnNamed(decodedName.trim());
    if (!masker.hasColumnRule(column)) return raw;
    return encodeURIComponent(masker.maskCell(raw, column, counts) ?? '');
  };
  if (header === 'set-cookie') {
    return value.replace(/^([^=;]*)=([^;]*)/, (_pair, name: string, raw: string) => `${name}=${covered(name, raw)}`);
  }
  if (header === 'location' || header === 'content-location' || header === 'link' || header === 'refresh') {
    return value.replace(/([?&;])([^=&;#\s<>"]*)=([^&;#\s<>"]*)/g, (_pair, separator: string, name: string, raw: string) => `${separator}${name}=${covered(name, raw)}`);
  }
  return value;
};
