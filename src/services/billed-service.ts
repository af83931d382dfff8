import type { Logger } from 'pino';
import type { Caller } from '../domain/caller.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import type { Admission, BilledTicket, BilledWorkRunner } from './billed-work.ts';
import type { IdempotencyService } from './idempotency.ts';
import type { ModelAccess } from './model-access.ts';

export interface BilledServiceDeps {
  registry: ProviderRegistry;
  models: ModelAccess;
  runner: BilledWorkRunner;
  idempotency: IdempotencyService;
  metrics: Metrics;
  logger: Logger;
}

/**
 * What every billed endpoint's service offers around the runner (billed-work.ts), images and chat alike: admission
 * and hold from the request's ticket, the whole path in one call for callers without an HTTP reply (async jobs), and
 * the shutdown drain. A subclass says what its request costs and takes (`ticket`) and how it runs (`execute`).
 */
export abstract class BilledService<Prepared, Hooks, Outcome, Deps extends BilledServiceDeps = BilledServiceDeps> {
  constructor(protected readonly deps: Deps) {}

  /** Idempotency-Key handling, for the routes that run these requests. */
  get idempotency(): IdempotencyService {
    return this.deps.idempotency;
  }

  /** The runner's view of a prepared request: model, endpoint, hold, images and model slots. */
  protected abstract ticket(prepared: Prepared): BilledTicket;

  /**
   * Runs a reserved request to its end; the hold is resolved exactly once (settled for what was delivered, released
   * otherwise) and a failure is thrown as the caller's GatewayError.
   */
  abstract execute(prepared: Prepared, requestId: string, hooks: Hooks): Promise<Outcome>;

  /**
   * Per-key limits (requests and images per minute, in-flight cap) and the model's cap on concurrent upstream calls,
   * before the hold so a refused request takes no credit (429 with Retry-After). The caller releases the admission
   * when the request ends, however it ends.
   */
  admit(caller: Caller, prepared: Prepared, requestId: string): Promise<Admission> {
    return this.deps.runner.admit(caller, this.ticket(prepared), requestId);
  }

  /** Reserves the quoted amount; 402 when the balance cannot cover it (nothing changes then). */
  reserve(caller: Caller, prepared: Prepared, requestId: string): Promise<void> {
    return this.deps.runner.reserve(caller, this.ticket(prepared), requestId);
  }

  /**
   * The whole billed path for a caller without an HTTP reply (async jobs): admission → hold → execute, the admission
   * given back however it ends. Throws the GatewayError an HTTP caller would have got (429, 402, the upstream's).
   */
  async run(caller: Caller, prepared: Prepared, requestId: string, hooks: Hooks): Promise<Outcome> {
    const admission = await this.admit(caller, prepared, requestId);
    try {
      await this.reserve(caller, prepared, requestId);
      return await this.execute(prepared, requestId, hooks);
    } finally {
      await admission.release();
    }
  }

  /** Waits (bounded) for in-flight work, e.g. on SIGTERM. */
  drain(timeoutMs: number): Promise<boolean> {
    return this.deps.runner.drain(timeoutMs);
  }
}
