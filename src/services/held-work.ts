import { insufficientQuota } from '../domain/errors.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { ReserveInput, Store } from '../store/types.ts';

/**
 * What every billed request does around its work, images and chat alike: the hold (402 when the balance cannot
 * cover it), the generation deadline, the holds-in-flight gauge, and being waited for at shutdown.
 */
export class HeldWork {
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly deps: { store: Store; metrics: Metrics; generationTimeoutMs: number; holdGraceMs: number }) {}

  /** Reserves `amount`; 402 insufficient_quota when the balance cannot cover it (nothing changes then). */
  async reserve(input: Omit<ReserveInput, 'expiresAt'>): Promise<void> {
    // The sweeper may release the hold only after the generation deadline has certainly passed.
    const ok = await this.deps.store.reserveCredits({ ...input, expiresAt: Date.now() + this.deps.generationTimeoutMs + this.deps.holdGraceMs });
    if (!ok) throw insufficientQuota();
  }

  /**
   * Runs reserved work with the generation deadline as its signal, counted as in flight until it ends. The deadline is
   * our own timer, not AbortSignal.timeout(): on Node 20 a timeout signal whose only reference is an AbortSignal.any()
   * is garbage-collected and never fires, and the work would outlive its deadline.
   */
  async run<T>(work: (deadline: AbortSignal) => Promise<T>): Promise<T> {
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new DOMException('The generation deadline passed.', 'TimeoutError')), this.deps.generationTimeoutMs);
    const running = work(deadline.signal);
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

  /** Waits (bounded) for the work in flight, e.g. on SIGTERM; false when some was still running at the end. */
  drain(timeoutMs: number): Promise<boolean> {
    const all = Promise.allSettled([...this.inFlight]).then(() => true);
    const timeout = new Promise<boolean>((resolve) => setTimeout(resolve, timeoutMs, false).unref());
    return Promise.race([all, timeout]);
  }
}
