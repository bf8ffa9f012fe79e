import { kindOfType } from './events.js';

/**
 * The services that sign what they publish on the bus, and the event aggregates each may publish.
 * A message signed by one of them is genuine only for its own aggregates: the proxy's key cannot
 * vouch for an `approval.decided`.
 */
export const SIGNER_AGGREGATES = {
  proxy: ['session', 'command', 'result'],
  approval: ['approval'],
  policy: ['policy'],
  audit: ['event'],
} as const satisfies Record<string, readonly string[]>;

export type SignerName = keyof typeof SIGNER_AGGREGATES;
export const SIGNER_NAMES = Object.keys(SIGNER_AGGREGATES) as SignerName[];

export const isSignerName = (name: unknown): name is SignerName => typeof name === 'string' && Object.hasOwn(SIGNER_AGGREGATES, name);

/** NATS message headers carrying a message's provenance. */
export const SIGNER_HEADER = 'Sluice-Signer';
export const SIGNATURE_HEADER = 'Sluice-Signature';

/** True when `signer` may publish events of this CloudEvents `type`. */
export const mayPublish = (signer: SignerName, type: string): boolean => {
  const kind = kindOfType(type);
  if (kind === undefined) return false;
  const aggregate = kind.split('.')[0]!;
  return (SIGNER_AGGREGATES[signer] as readonly string[]).includes(aggregate);
};
