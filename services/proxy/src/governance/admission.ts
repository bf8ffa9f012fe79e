import { SluiceErrorCode, type Subject } from '@sluice/contracts';
import type { PolicyPort } from '../ports.js';

/** Whether a subject may open a session on a resource, and how the session is recorded. */
export type Admission =
  | { readonly admitted: true; readonly readOnly: boolean }
  | {
      readonly admitted: false;
      readonly code: typeof SluiceErrorCode.PolicyDenied | typeof SluiceErrorCode.PolicyUnavailable;
      /** For the session.rejected record. */
      readonly reason: string;
    };

/** Asks the policy whether any rule lets the subject use the resource; a policy that cannot answer refuses (fail closed). */
export const admitSession = async (policy: PolicyPort, subject: Subject, resource: string): Promise<Admission> => {
  try {
    const session = await policy.describeSession(subject, resource);
    if (!session.mayConnect) return { admitted: false, code: SluiceErrorCode.PolicyDenied, reason: 'no rule lets this subject use the resource' };
    return { admitted: true, readOnly: session.readOnly };
  } catch {
    return { admitted: false, code: SluiceErrorCode.PolicyUnavailable, reason: 'policy unavailable' };
  }
};
