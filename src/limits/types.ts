/**
 * Rate limits and concurrency caps, checked before any credit is held. One backend decides each admission in a
 * single atomic step: the per-minute windows of the key (requests, images, tokens), the key's in-flight slots and the
 * model's upstream-call slots are all taken together, or none is.
 *
 * Windows are GCRA (a leaky bucket kept as one timestamp per key and dimension): a limit of L per minute admits a
 * burst of L, then one more every 60/L seconds. In-flight slots are leases that expire on their own (a crashed
 * instance cannot leak a slot for longer than the lease), and are released by the request that took them.
 *
 * Tokens (text models) are admitted at the request's upper bound (its prompt bound plus the most completion tokens it
 * allows), because the real count is known only at the end; settlement gives the unused part back to the window
 * (`refundTokens`: the stored arrival time moves back by the unused tokens' share, never before now).
 */

/** Effective limits of one key; 0 = unlimited. */
export interface KeyLimits {
  requestsPerMinute: number;
  imagesPerMinute: number;
  maxInFlight: number;
  tokensPerMinute: number;
}

export interface AdmitInput {
  keyId: string;
  limits: KeyLimits;
  /** Images this request asks for (n): its cost against the images window. */
  images: number;
  /** The most tokens this request can use (text models; 0 for images): its cost against the tokens window. */
  tokens: number;
  model: string;
  /** Concurrent upstream calls this request makes (n fanned out by the adapter's images per call). */
  modelSlots: number;
  /** The model's cap on concurrent upstream calls; 0 = none. */
  modelCap: number;
  /** Names the in-flight slots (the request id). */
  leaseId: string;
  /** A slot not released within this time frees itself (longest a request can live: generation deadline + grace). */
  leaseMs: number;
}

/** One per-minute window as the x-ratelimit-* headers show it. */
export interface WindowState {
  limit: number;
  remaining: number;
  /** Until the window is back to its full allowance. */
  resetMs: number;
}

export type RefusalReason =
  | 'requests'
  | 'images'
  | 'images_over_limit'
  | 'tokens'
  | 'tokens_over_limit'
  | 'in_flight'
  | 'model_concurrency';

export type AdmitResult =
  | { admitted: true; requests?: WindowState; images?: WindowState; tokens?: WindowState }
  | { admitted: false; reasons: RefusalReason[]; retryAfterMs: number; requests?: WindowState; images?: WindowState; tokens?: WindowState };

/** Tokens admitted but not used, given back to a key's tokens window at settlement. */
export interface RefundInput {
  keyId: string;
  /** The key's tokens-per-minute limit (the window's rate). */
  tokensPerMinute: number;
  tokens: number;
}

export interface ReleaseInput {
  keyId: string;
  model: string;
  leaseId: string;
  modelSlots: number;
}

export interface LimitBackend {
  readonly kind: 'memory' | 'redis';
  admit(input: AdmitInput): Promise<AdmitResult>;
  /** Frees the in-flight slots of a lease; idempotent, and a no-op for slots already expired or never taken. */
  release(input: ReleaseInput): Promise<void>;
  /** Gives unused tokens back to the key's tokens window. */
  refundTokens(input: RefundInput): Promise<void>;
  close(): Promise<void>;
}

export const WINDOW_MS = 60_000;
/** When a concurrency slot frees cannot be known; this asks the client to try again shortly. */
export const IN_FLIGHT_RETRY_MS = 1_000;

/**
 * The GCRA step shared by both backends (the Redis script is a line-by-line copy in Lua). `tat` is the stored
 * theoretical arrival time (0 when none). Returns the new TAT to store when allowed.
 */
export function gcra(
  tat: number,
  now: number,
  limit: number,
  quantity: number,
): { allowed: boolean; tat: number; retryMs: number; state: WindowState } {
  const interval = WINDOW_MS / limit;
  const base = Math.max(tat, now);
  const next = base + quantity * interval;
  const allowAt = next - WINDOW_MS;
  if (allowAt > now) {
    return { allowed: false, tat: base, retryMs: allowAt - now, state: windowState(limit, base - now, interval) };
  }
  return { allowed: true, tat: next, retryMs: 0, state: windowState(limit, next - now, interval) };
}

/** The stored arrival time after giving back `quantity` units of a window of `limit` per minute. */
export function gcraRefund(tat: number, now: number, limit: number, quantity: number): number {
  return Math.max(now, tat - quantity * (WINDOW_MS / limit));
}

function windowState(limit: number, backlogMs: number, interval: number): WindowState {
  // The epsilon absorbs floating-point error from intervals such as 60000/7.
  return { limit, remaining: Math.max(0, Math.floor((WINDOW_MS - backlogMs) / interval + 1e-9)), resetMs: Math.ceil(backlogMs) };
}
