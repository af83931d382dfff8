import {
  IN_FLIGHT_RETRY_MS,
  WINDOW_MS,
  gcra,
  gcraRefund,
  type AdmitInput,
  type AdmitResult,
  type LimitBackend,
  type RefundInput,
  type RefusalReason,
  type ReleaseInput,
  type WindowState,
} from './types.ts';

/**
 * Limits for one instance, in process memory: the default, and the fallback while Redis is unreachable.
 * Each admit runs synchronously, so it is atomic within the process.
 */
export class MemoryLimitBackend implements LimitBackend {
  readonly kind = 'memory' as const;
  /** GCRA theoretical arrival times, by `r:<key>` / `i:<key>` / `t:<key>`. */
  private readonly tats = new Map<string, number>();
  /** Lease id → expiry, by `k:<key>` / `m:<model>`. */
  private readonly leases = new Map<string, Map<string, number>>();
  private admissions = 0;

  constructor(private readonly now: () => number = Date.now) {}

  async admit(input: AdmitInput): Promise<AdmitResult> {
    const now = this.now();
    if (++this.admissions % 1000 === 0) this.prune(now);
    const { limits } = input;
    const reasons: RefusalReason[] = [];
    let retryMs = 0;
    let requests: WindowState | undefined;
    let images: WindowState | undefined;
    let tokens: WindowState | undefined;
    let nextRequestsTat: number | undefined;
    let nextImagesTat: number | undefined;
    let nextTokensTat: number | undefined;

    if (limits.requestsPerMinute > 0) {
      const step = gcra(this.tats.get(`r:${input.keyId}`) ?? 0, now, limits.requestsPerMinute, 1);
      requests = step.state;
      if (step.allowed) nextRequestsTat = step.tat;
      else {
        reasons.push('requests');
        retryMs = Math.max(retryMs, step.retryMs);
      }
    }
    if (limits.imagesPerMinute > 0) {
      const step = gcra(this.tats.get(`i:${input.keyId}`) ?? 0, now, limits.imagesPerMinute, input.images);
      images = step.state;
      if (input.images > limits.imagesPerMinute) {
        reasons.push('images_over_limit');
        retryMs = Math.max(retryMs, WINDOW_MS);
      } else if (step.allowed) nextImagesTat = step.tat;
      else {
        reasons.push('images');
        retryMs = Math.max(retryMs, step.retryMs);
      }
    }
    if (limits.tokensPerMinute > 0 && input.tokens > 0) {
      const step = gcra(this.tats.get(`t:${input.keyId}`) ?? 0, now, limits.tokensPerMinute, input.tokens);
      tokens = step.state;
      if (input.tokens > limits.tokensPerMinute) {
        reasons.push('tokens_over_limit');
        retryMs = Math.max(retryMs, WINDOW_MS);
      } else if (step.allowed) nextTokensTat = step.tat;
      else {
        reasons.push('tokens');
        retryMs = Math.max(retryMs, step.retryMs);
      }
    }
    const keyLeases = limits.maxInFlight > 0 ? this.live(`k:${input.keyId}`, now) : undefined;
    if (keyLeases && keyLeases.size >= limits.maxInFlight) {
      reasons.push('in_flight');
      retryMs = Math.max(retryMs, IN_FLIGHT_RETRY_MS);
    }
    const modelLeases = input.modelCap > 0 ? this.live(`m:${input.model}`, now) : undefined;
    if (modelLeases && modelLeases.size + input.modelSlots > input.modelCap) {
      reasons.push('model_concurrency');
      retryMs = Math.max(retryMs, IN_FLIGHT_RETRY_MS);
    }
    if (reasons.length > 0) return { admitted: false, reasons, retryAfterMs: retryMs, requests, images, tokens };

    if (nextRequestsTat !== undefined) this.tats.set(`r:${input.keyId}`, nextRequestsTat);
    if (nextImagesTat !== undefined) this.tats.set(`i:${input.keyId}`, nextImagesTat);
    if (nextTokensTat !== undefined) this.tats.set(`t:${input.keyId}`, nextTokensTat);
    const expiry = now + input.leaseMs;
    keyLeases?.set(input.leaseId, expiry);
    for (let slot = 1; slot <= input.modelSlots; slot++) modelLeases?.set(`${input.leaseId}#${slot}`, expiry);
    return { admitted: true, requests, images, tokens };
  }

  async refundTokens(input: RefundInput): Promise<void> {
    const name = `t:${input.keyId}`;
    const tat = this.tats.get(name);
    if (tat === undefined || input.tokens <= 0 || input.tokensPerMinute <= 0) return;
    this.tats.set(name, gcraRefund(tat, this.now(), input.tokensPerMinute, input.tokens));
  }

  async release(input: ReleaseInput): Promise<void> {
    this.leases.get(`k:${input.keyId}`)?.delete(input.leaseId);
    const model = this.leases.get(`m:${input.model}`);
    for (let slot = 1; slot <= input.modelSlots; slot++) model?.delete(`${input.leaseId}#${slot}`);
  }

  async close(): Promise<void> {
    this.tats.clear();
    this.leases.clear();
  }

  /** The unexpired leases of one key or model (expired ones are dropped on the way). */
  private live(name: string, now: number): Map<string, number> {
    let leases = this.leases.get(name);
    if (!leases) {
      leases = new Map();
      this.leases.set(name, leases);
    }
    for (const [id, expiry] of leases) if (expiry <= now) leases.delete(id);
    return leases;
  }

  /** Forgets windows that are back to full and empty lease sets, so idle keys cost no memory. */
  private prune(now: number): void {
    for (const [name, tat] of this.tats) if (tat <= now) this.tats.delete(name);
    for (const [name, leases] of this.leases) {
      for (const [id, expiry] of leases) if (expiry <= now) leases.delete(id);
      if (leases.size === 0) this.leases.delete(name);
    }
  }
}
