import { buildEvent, kindOfType, SluiceError, SluiceErrorCode, type CloudEvent } from '@sluice/contracts';
import { timeOrderedId } from '@sluice/event-bus';
import type { Logger } from '@sluice/service-runtime';
import {
  decide,
  evolve,
  initialState,
  isSettled,
  type Approval,
  type ApprovalCommand,
  type ApprovalEvent,
  type ApprovalStatus,
  type KnownApproval,
} from './approval.js';

export class ApprovalNotFoundError extends SluiceError {
  readonly code = SluiceErrorCode.NotFound;
  override readonly expose = true;
  constructor(readonly approvalId: string) {
    super(`no approval ${approvalId}`);
  }
}

/** Where the workflow stores its events: JetStream in the service, a list in unit tests. */
export interface EventSink {
  /** Resolves once the event is stored (acknowledged). */
  publishNow(event: CloudEvent): Promise<void>;
}

export interface WorkflowHooks {
  /** A new request was stored: notify approvers. */
  readonly onRequested?: (approval: KnownApproval) => void;
  /** A request reached a final state (granted, denied, expired, cancelled). */
  readonly onSettled?: (approval: KnownApproval) => void;
}

const EVENT_SOURCE = 'approval';

/** The CloudEvent of an approval event; its subject is the session the command came from. */
export const toCloudEvent = (event: ApprovalEvent, sessionId: string): CloudEvent => {
  const fields = { id: timeOrderedId(), source: EVENT_SOURCE, subject: sessionId, time: new Date(event.at) };
  switch (event.type) {
    case 'approval.requested':
      return buildEvent(event.type, { ...fields, data: event.data });
    case 'approval.decided':
      return buildEvent(event.type, { ...fields, data: event.data });
    case 'approval.expired':
      return buildEvent(event.type, { ...fields, data: event.data });
    case 'approval.cancelled':
      return buildEvent(event.type, { ...fields, data: event.data });
    case 'approval.executed':
      return buildEvent(event.type, { ...fields, data: event.data });
  }
};

/** The approval event a stored CloudEvent carries, or undefined for other kinds. */
export const fromCloudEvent = (event: CloudEvent): ApprovalEvent | undefined => {
  const kind = kindOfType(event.type);
  const at = event.time;
  const data = event.data as unknown as Record<string, unknown>;
  if (typeof data?.approvalId !== 'string') return undefined;
  switch (kind) {
    case 'approval.requested':
      return { type: kind, sessionId: event.subject, at, data: event.data as CloudEvent<'approval.requested'>['data'] };
    case 'approval.decided':
      return { type: kind, at, data: event.data as CloudEvent<'approval.decided'>['data'] };
    case 'approval.expired':
      return { type: kind, at, data: event.data as CloudEvent<'approval.expired'>['data'] };
    case 'approval.cancelled':
      return { type: kind, at, data: event.data as CloudEvent<'approval.cancelled'>['data'] };
    case 'approval.executed':
      return { type: kind, at, data: event.data as CloudEvent<'approval.executed'>['data'] };
    default:
      return undefined;
  }
};

/** setTimeout takes at most a signed 32-bit delay; longer waits re-arm. */
const MAX_TIMER_MS = 2_147_483_647;

/** How long a command waits to see its own event come back from the stream before failing. */
const OBSERVE_TIMEOUT_MS = 15_000;

export interface WorkflowOptions {
  /**
   * The stream is the aggregate: every event (this instance's too) reaches the state only when
   * `observe` is called with it, as the stream delivers it, so N instances fold the same history
   * in the same order. Without it (unit tests, a list sink) an event is folded once stored.
   */
  readonly followsStream?: boolean;
  readonly observeTimeoutMs?: number;
}

/**
 * Runs commands against approvals: decide, store every event (awaiting the bus ack), and only
 * then evolve the state and release waiters, so nothing is answered that a restart could lose.
 * Commands on one approval run one at a time here; instances deciding the same approval at once
 * are ordered by the stream (an event that no longer fits is ignored by evolve). Expiry timers
 * are armed for pending requests.
 */
export class ApprovalWorkflow {
  readonly #states = new Map<string, KnownApproval>();
  readonly #queues = new Map<string, Promise<unknown>>();
  readonly #waiters = new Map<string, Set<(approval: KnownApproval) => void>>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** Events this instance stored, by CloudEvent id, until the stream delivers them back. */
  readonly #awaitingObservation = new Map<string, () => void>();
  #live = false;
  #stopped = false;

  constructor(
    private readonly sink: EventSink,
    private readonly logger: Logger,
    private readonly hooks: WorkflowHooks = {},
    private readonly now: () => Date = () => new Date(),
    private readonly options: WorkflowOptions = {},
  ) {}

  /** Folds a stored event in without deciding anything (the replay after a restart). */
  replay(event: ApprovalEvent): void {
    this.#fold(event, false);
  }

  /**
   * Folds in an event as the stream delivers it, whoever stored it: once live (after armTimers),
   * a new request gets its expiry timer and a settled one releases its waiters here.
   */
  observe(event: ApprovalEvent, eventId?: string): void {
    this.#fold(event, this.#live);
    if (eventId !== undefined) this.#awaitingObservation.get(eventId)?.();
  }

  #fold(event: ApprovalEvent, live: boolean): void {
    const id = event.data.approvalId;
    const before = this.#states.get(id) ?? initialState;
    const next = evolve(before, event);
    if (next === before || next.status === 'none') return;
    this.#states.set(id, next);
    if (live && before.status === 'none') this.#armExpiry(next);
    if (live && !isSettled(before) && isSettled(next)) this.#settle(next);
  }

  /** After the replay: expire what fell due while the service was down, arm the rest. */
  armTimers(): void {
    this.#live = true;
    for (const approval of this.#states.values()) if (approval.status === 'pending') this.#armExpiry(approval);
  }

  get(id: string): KnownApproval | undefined {
    return this.#states.get(id);
  }

  list(status?: ApprovalStatus): KnownApproval[] {
    const all = [...this.#states.values()];
    return (status ? all.filter((approval) => approval.status === status) : all).sort((a, b) => a.requestedAt.localeCompare(b.requestedAt));
  }

  /** Runs a command on one approval; throws ApprovalNotFoundError, or the decider's refusal. */
  execute(id: string, command: ApprovalCommand): Promise<KnownApproval> {
    const previous = this.#queues.get(id) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(() => this.#execute(id, command));
    const settled = run.catch(() => undefined);
    this.#queues.set(id, settled);
    void settled.then(() => {
      if (this.#queues.get(id) === settled) this.#queues.delete(id);
    });
    return run;
  }

  /**
   * Resolves with the approval once it is settled, or with its current state after `timeoutMs`
   * (a long poll; the caller asks again). Aborting the signal stops waiting.
   */
  waitForSettled(id: string, timeoutMs: number, signal?: AbortSignal): Promise<KnownApproval> {
    const current = this.#states.get(id);
    if (!current) return Promise.reject(new ApprovalNotFoundError(id));
    if (isSettled(current)) return Promise.resolve(current);
    return new Promise((resolve) => {
      const waiters = this.#waiters.get(id) ?? new Set();
      this.#waiters.set(id, waiters);
      const done = (approval: KnownApproval): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        waiters.delete(done);
        if (waiters.size === 0 && this.#waiters.get(id) === waiters) this.#waiters.delete(id);
        resolve(approval);
      };
      const onAbort = (): void => done(this.#states.get(id) ?? current);
      const timer = setTimeout(onAbort, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      waiters.add(done);
    });
  }

  stop(): void {
    this.#stopped = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    for (const [id, waiters] of this.#waiters) {
      const state = this.#states.get(id);
      if (state) for (const waiter of [...waiters]) waiter(state);
    }
  }

  async #execute(id: string, command: ApprovalCommand): Promise<KnownApproval> {
    const state: Approval = this.#states.get(id) ?? initialState;
    if (state.status === 'none' && command.type !== 'Request') throw new ApprovalNotFoundError(id);
    const events = decide(command, state);
    const sessionId = command.type === 'Request' ? command.sessionId : (state as KnownApproval).sessionId;
    // Stored first: nobody learns of a decision the bus has not acknowledged.
    for (const event of events) {
      const cloudEvent = toCloudEvent(event, sessionId);
      if (this.options.followsStream) await this.#storeAndObserve(cloudEvent);
      else {
        await this.sink.publishNow(cloudEvent);
        this.#fold(event, true);
      }
    }
    const next = this.#states.get(id)!;
    if (state.status === 'none') this.hooks.onRequested?.(next);
    return next;
  }

  /** Publishes, then waits for the stream to deliver the event back (so it is folded in stream order). */
  async #storeAndObserve(event: CloudEvent): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const observed = new Promise<void>((resolve, reject) => {
      this.#awaitingObservation.set(event.id, resolve);
      timer = setTimeout(
        () => reject(new Error(`approval event ${event.id} was stored but not seen on the stream within ${this.options.observeTimeoutMs ?? OBSERVE_TIMEOUT_MS} ms`)),
        this.options.observeTimeoutMs ?? OBSERVE_TIMEOUT_MS,
      );
    });
    try {
      await this.sink.publishNow(event);
      await observed;
    } finally {
      clearTimeout(timer);
      this.#awaitingObservation.delete(event.id);
    }
  }

  #settle(approval: KnownApproval): void {
    clearTimeout(this.#timers.get(approval.id));
    this.#timers.delete(approval.id);
    for (const waiter of [...(this.#waiters.get(approval.id) ?? [])]) waiter(approval);
    try {
      this.hooks.onSettled?.(approval);
    } catch (error) {
      this.logger.warn({ err: error, approvalId: approval.id }, 'settle hook failed');
    }
  }

  #armExpiry(approval: KnownApproval): void {
    if (this.#stopped || approval.status !== 'pending') return;
    clearTimeout(this.#timers.get(approval.id));
    const delay = Math.max(0, Date.parse(approval.request.expiresAt) - this.now().getTime());
    const timer = setTimeout(() => {
      this.#timers.delete(approval.id);
      const current = this.#states.get(approval.id);
      if (!current || current.status !== 'pending') return;
      if (delay > MAX_TIMER_MS) {
        this.#armExpiry(current);
        return;
      }
      // A timer may fire a millisecond early; the expiry is never before the due time.
      const at = new Date(Math.max(this.now().getTime(), Date.parse(current.request.expiresAt)));
      this.execute(approval.id, { type: 'Expire', at }).catch((error: unknown) => {
        if (error instanceof SluiceError && error.code === SluiceErrorCode.IllegalTransition) return;
        // The bus refused the event: try again shortly, the request stays pending meanwhile.
        this.logger.warn({ err: error, approvalId: approval.id }, 'could not store the expiry; retrying');
        const retry = setTimeout(() => this.#armExpiry(this.#states.get(approval.id) ?? current), 1_000);
        retry.unref();
        this.#timers.set(approval.id, retry);
      });
    }, Math.min(delay, MAX_TIMER_MS));
    timer.unref();
    this.#timers.set(approval.id, timer);
  }
}
