import type { Logger } from 'pino';
import type { Caller } from '../domain/caller.ts';
import { GatewayError, insufficientQuota, internalError, rateLimited } from '../domain/errors.ts';
import type { Nanos } from '../domain/money.ts';
import { sleep } from '../domain/sleep.ts';
import type { Admission, RequestLimiter } from '../limits/limiter.ts';

export type { Admission };
import type { Metrics } from '../metrics/metrics.ts';
import type { ResolvedRoute } from '../providers/registry.ts';
import { ProviderError, type ProviderAdapter } from '../providers/types.ts';
import type { SettleInput, Store } from '../store/types.ts';
import { describeFailure, toGatewayError } from './upstream-errors.ts';

/** What the runner needs to know of a prepared request: whose money, how much, and what capacity it takes. */
export interface BilledTicket {
  model: string;
  /** What the request record and the ledger call the endpoint (images.generations, chat.completions, ...). */
  endpoint: string;
  /** The most the request can cost: the hold. */
  hold: Nanos;
  /** Images asked for (per-key images per minute); 0 for text. */
  images: number;
  /** The most tokens the request can use (text: prompt bound + completion budget), for the key's tokens per minute. */
  tokens?: number;
  /** The model's cap on concurrent upstream calls (0 = none) and how many of them this request takes. */
  modelCap: number;
  modelSlots: number;
}

/** What a finished piece of work is charged: the request record's resolution. */
export interface Settlement {
  cost: Nanos;
  upstreamCost?: Nanos;
  images: number;
  detail: Record<string, unknown>;
  /** Tokens the work used (text): the rest of the ticket's tokens go back to the key's tokens per minute. */
  tokens?: number;
}

/** Work that delivered something: its value and what it is charged. */
export interface BilledResult<T> {
  value: T;
  settlement: Settlement;
}

/** Attempts per route before failing over to the next one. */
export const ATTEMPTS_PER_ROUTE = 2;

/**
 * The one path of billed upstream work, whoever asks for it (the HTTP routes, async jobs): admission (per-key and
 * per-model limits) → hold → the work, under the generation deadline, with retries and failover only before an
 * upstream accepted it → settle or release, exactly once → the caller's error (upstream-errors.ts). Framing an answer
 * (JSON, SSE, a stored job result) is the caller's business; money is this one's.
 *
 * A caller takes these steps in order: `admit` (release the admission however the request ends), `reserve`, `run`.
 */
export class BilledWorkRunner {
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Upstream calls open per route (provider and base URL), against each route's max_connections. */
  private readonly openCalls = new Map<string, number>();
  /** Aborted when shutdown's grace period ends (abandonAll): every running piece of work stops and is answered. */
  private readonly stopping = new AbortController();
  /** The admissions of text requests counted on a tokens window, until released: settlement gives their unused tokens back. */
  private readonly tokenAdmissions = new Map<string, Admission>();

  constructor(
    private readonly deps: {
      store: Store;
      limiter: RequestLimiter;
      metrics: Metrics;
      logger: Logger;
      generationTimeoutMs: number;
      /** After the deadline, before the sweeper may release a hold whose instance went away. */
      holdGraceMs: number;
    },
  ) {}

  /**
   * Per-key limits (requests and images per minute, in-flight cap) and the model's cap on concurrent upstream calls,
   * checked before the hold so a refused request takes no credit: 429 rate_limit_exceeded with Retry-After.
   */
  async admit(caller: Caller, ticket: BilledTicket, requestId: string): Promise<Admission> {
    const admission = await this.deps.limiter.admit({
      keyId: caller.keyId,
      keyLimits: caller.limits,
      images: ticket.images,
      tokens: ticket.tokens,
      model: ticket.model,
      modelCap: ticket.modelCap,
      modelSlots: ticket.modelSlots,
      requestId,
    });
    if (!ticket.tokens) return admission;
    // Tokens are admitted at the bound; settlement gives back what the request did not use, and a request that ends
    // unsettled (failed, refused for credit) gives back all of it when released.
    this.tokenAdmissions.set(requestId, admission);
    return {
      headers: admission.headers,
      settleTokens: admission.settleTokens,
      release: async () => {
        this.tokenAdmissions.delete(requestId);
        await admission.release(0);
      },
    };
  }

  /** Reserves the ticket's hold; 402 insufficient_quota when the balance cannot cover it (nothing changes then). */
  async reserve(caller: Caller, ticket: BilledTicket, requestId: string): Promise<void> {
    // The sweeper may release the hold only after the generation deadline has certainly passed.
    const expiresAt = Date.now() + this.deps.generationTimeoutMs + this.deps.holdGraceMs;
    const ok = await this.deps.store.reserveCredits({
      requestId,
      accountId: caller.accountId,
      keyId: caller.keyId,
      model: ticket.model,
      endpoint: ticket.endpoint,
      amount: ticket.hold,
      expiresAt,
    });
    if (!ok) throw insufficientQuota();
  }

  /**
   * Runs reserved work and resolves its hold exactly once: settled as the work says when it returns, released when it
   * throws (then the failure is mapped to the caller's GatewayError). The work's signal is the caller's `signal` and
   * the generation deadline together. The deadline is our own timer, not AbortSignal.timeout(): on Node 20 a timeout
   * signal whose only reference is an AbortSignal.any() is garbage-collected and never fires.
   */
  async run<T>(
    requestId: string,
    signal: AbortSignal,
    work: (signal: AbortSignal) => Promise<BilledResult<T>>,
    /** An Idempotency-Key's response for this value, saved in the settling transaction (see IdempotentRun.atSettlement). */
    savedResponse?: (value: T) => SettleInput['idempotency'],
  ): Promise<T> {
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new DOMException('The generation deadline passed.', 'TimeoutError')),
      this.deps.generationTimeoutMs,
    );
    const running = this.resolveHold(
      requestId,
      signal,
      AbortSignal.any([signal, deadline.signal, this.stopping.signal]),
      work,
      savedResponse,
    );
    this.inFlight.add(running);
    this.deps.metrics.holdTaken();
    try {
      return await running;
    } finally {
      this.deps.metrics.holdResolved();
      clearTimeout(timer);
      this.inFlight.delete(running);
    }
  }

  private async resolveHold<T>(
    requestId: string,
    callerSignal: AbortSignal,
    signal: AbortSignal,
    work: (signal: AbortSignal) => Promise<BilledResult<T>>,
    savedResponse?: (value: T) => SettleInput['idempotency'],
  ): Promise<T> {
    const { store, logger } = this.deps;
    let result: BilledResult<T>;
    try {
      result = await work(signal);
    } catch (error) {
      const stopped = this.stopping.signal.aborted && !callerSignal.aborted;
      const reason = stopped ? 'shutdown: the server stopped before the work finished' : describeFailure(error);
      await store
        .releaseReservation(requestId, reason)
        .catch((releaseError) => logger.error({ err: releaseError, requestId }, 'release failed'));
      throw stopped ? shuttingDown() : toGatewayError(error, signal, callerSignal);
    }
    const { tokens, ...settlement } = result.settlement;
    const settled = await store.settleReservation({ requestId, ...settlement, idempotency: savedResponse?.(result.value) });
    if (!settled) {
      // Only the sweeper can have resolved it first, which means we overran the hold's expiry: deliver nothing we did not bill.
      logger.error({ requestId }, 'hold was already resolved before settlement');
      throw internalError();
    }
    if (tokens !== undefined) await this.tokenAdmissions.get(requestId)?.settleTokens?.(tokens);
    return result.value;
  }

  /**
   * Routes in the catalog's order, each tried up to ATTEMPTS_PER_ROUTE times (jittered backoff, Retry-After honoured up
   * to 10 s). Another attempt, or the next route, only when the upstream failed before accepting the work (connection
   * refused, 429, 5xx) and `mayRetry` agrees (chat: nothing streamed to the caller yet): nothing is generated or billed
   * twice. Every call is counted by outcome where it is decided.
   */
  async withFailover<Adapter extends ProviderAdapter, R>(
    routes: ResolvedRoute<Adapter>[],
    signal: AbortSignal,
    call: (route: ResolvedRoute<Adapter>) => Promise<R>,
    mayRetry: () => boolean = () => true,
  ): Promise<R> {
    const { metrics, logger } = this.deps;
    let lastError: unknown;
    for (let position = 0; position < routes.length; position++) {
      const route = routes[position];
      const slot = `${route.adapter.provider} ${route.target.baseUrl ?? ''}`;
      const cap = route.target.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
      for (let attempt = 0; attempt < ATTEMPTS_PER_ROUTE; attempt++) {
        const open = this.openCalls.get(slot) ?? 0;
        if (open >= cap) {
          // Full: the next route at once, else 429 now. Waiting for a connection would mean waiting while holding credit.
          logger.warn({ provider: route.adapter.provider, maxConnections: cap }, 'route at its max_connections; call not started');
          lastError = routeBusy();
          break;
        }
        this.openCalls.set(slot, open + 1);
        try {
          const result = await call(route);
          metrics.upstreamCall(route.adapter.provider, 'ok');
          return result;
        } catch (error) {
          lastError = error;
        } finally {
          const left = (this.openCalls.get(slot) ?? 1) - 1;
          if (left > 0) this.openCalls.set(slot, left);
          else this.openCalls.delete(slot);
        }
        const error = lastError;
        const retryable =
          error instanceof ProviderError &&
          !error.accepted &&
          (error.kind === 'unavailable' || error.kind === 'rate_limited') &&
          mayRetry();
        const again = retryable && !signal.aborted && attempt + 1 < ATTEMPTS_PER_ROUTE;
        const failover = retryable && !signal.aborted && !again && position + 1 < routes.length;
        metrics.upstreamCall(route.adapter.provider, again ? 'retried' : failover ? 'failed_over' : 'error');
        if (!retryable || signal.aborted) throw error;
        logger.warn({ provider: route.adapter.provider, attempt, err: error }, 'upstream failed before accepting the work');
        if (again) await sleep(backoffMs(attempt, (error as ProviderError).retryAfterSeconds), signal);
      }
    }
    throw lastError;
  }

  /**
   * The end of shutdown's grace period: every piece of work still running is stopped, its hold released at once and
   * its caller answered 503 server_shutting_down (an `error` event on a stream), instead of a hang-up and a hold left
   * for the sweeper. Resolves when all of it has ended (bounded by `timeoutMs`). New work started after this fails
   * the same way at once.
   */
  async abandonAll(timeoutMs: number): Promise<number> {
    const running = this.inFlight.size;
    this.stopping.abort(new DOMException('The server is shutting down.', 'AbortError'));
    await this.drain(timeoutMs);
    return running;
  }

  /** Waits (bounded) for the work in flight, e.g. on SIGTERM; false when some was still running at the end. */
  drain(timeoutMs: number): Promise<boolean> {
    const all = Promise.allSettled([...this.inFlight]).then(() => true);
    const timeout = new Promise<boolean>((resolve) => setTimeout(resolve, timeoutMs, false).unref());
    return Promise.race([all, timeout]);
  }
}

/** A route's cap on open upstream calls when the catalog sets none (undici's pool used to cap at this, silently queueing). */
export const DEFAULT_MAX_CONNECTIONS = 256;

/** Every route of the model is at its max_connections on this instance. */
function routeBusy(): GatewayError {
  return rateLimited('Every upstream connection this server may open for this model is in use. Please retry after a short delay.', 1);
}

/** What a caller whose work was stopped by shutdown gets: retryable, on another instance or after a restart. */
export function shuttingDown(): GatewayError {
  return new GatewayError('The server is shutting down and stopped this request before it finished; you were not charged. Please retry.', {
    status: 503,
    type: 'api_error',
    code: 'server_shutting_down',
    headers: { 'retry-after': '1' },
  });
}

/** Jittered exponential backoff, honouring the upstream's Retry-After up to 10 s (the caller is waiting). */
export function backoffMs(attempt: number, retryAfterSeconds: number | undefined): number {
  if (retryAfterSeconds !== undefined) return Math.min(10_000, retryAfterSeconds * 1000);
  const base = Math.min(4_000, 250 * 2 ** attempt);
  return base / 2 + Math.random() * (base / 2);
}
