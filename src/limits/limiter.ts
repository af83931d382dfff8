import type { Logger } from 'pino';
import { rateLimited } from '../domain/errors.ts';
import type { ApiKeyLimits } from '../domain/caller.ts';
import { MemoryLimitBackend } from './memory-backend.ts';
import type { AdmitInput, AdmitResult, KeyLimits, LimitBackend, RefusalReason, WindowState } from './types.ts';

/** An admitted request: the headers to answer with, and its in-flight slots to give back (idempotent). */
export interface Admission {
  headers: Record<string, string>;
  /**
   * Gives back the in-flight slots and, for a text request admitted on a tokens window, the tokens it did not use:
   * `usedTokens` is what it consumed (prompt + completion; 0 when it failed), unknown = all it was admitted for.
   */
  release(usedTokens?: number): Promise<void>;
  /**
   * Gives back at once the tokens a settled request did not use (before its answer is sent, so the caller's next request
   * sees them); once only, and release() then gives back nothing more. A no-op for requests without a tokens window.
   */
  settleTokens?(usedTokens: number): Promise<void>;
}

export interface AdmitRequest {
  keyId: string;
  /** The key's own limits; null fields (or none at all) take the server defaults. */
  keyLimits: ApiKeyLimits | undefined;
  images: number;
  /** The most tokens the request can use (text models: prompt bound + completion budget); 0 or absent for images. */
  tokens?: number;
  model: string;
  modelCap: number;
  modelSlots: number;
  requestId: string;
}

export interface LimiterStats {
  /** Admissions decided by the per-instance fallback because the shared backend failed. */
  degraded: number;
  refused: number;
}

/** Where refusals and degraded decisions are counted (src/metrics/metrics.ts); optional. */
export interface LimiterMetrics {
  rateLimitRejected(limit: RefusalReason): void;
  rateLimitDegraded(): void;
}

/** Sent on every response decided while Redis was unreachable: the limits shown are this instance's only. */
export const DEGRADED_HEADER = 'x-deepshi-limits-degraded';

const NO_SLOTS: Admission = { headers: {}, release: async () => {}, settleTokens: async () => {} };

/**
 * Per-key and per-model admission in front of the hold. With Redis (several instances) the decision is shared;
 * when Redis fails the limiter FAILS OPEN to this instance's own memory backend with the same limits, so the money
 * path keeps working and limits still hold per instance (at most N× across N instances). It is loud about it:
 * an error log at most every 10 s with the count, a counter in `stats`, and a header on every degraded response.
 */
export class RequestLimiter {
  private readonly fallback: MemoryLimitBackend | undefined;
  private readonly counters: LimiterStats = { degraded: 0, refused: 0 };
  private lastAlarm = 0;
  private unreported = 0;

  constructor(
    private readonly deps: {
      backend: LimitBackend;
      defaults: KeyLimits;
      /** How long an unreleased slot lives (generation deadline + grace). */
      leaseMs: number;
      logger: Logger;
      metrics?: LimiterMetrics;
    },
  ) {
    this.fallback = deps.backend.kind === 'memory' ? undefined : new MemoryLimitBackend();
  }

  get backendKind(): LimitBackend['kind'] {
    return this.deps.backend.kind;
  }

  get stats(): LimiterStats {
    return { ...this.counters };
  }

  effectiveLimits(own: ApiKeyLimits | undefined): KeyLimits {
    const { defaults } = this.deps;
    return {
      requestsPerMinute: own?.requestsPerMinute ?? defaults.requestsPerMinute,
      imagesPerMinute: own?.imagesPerMinute ?? defaults.imagesPerMinute,
      maxInFlight: own?.maxInFlight ?? defaults.maxInFlight,
      tokensPerMinute: own?.tokensPerMinute ?? defaults.tokensPerMinute,
    };
  }

  /** Admits the request or throws 429 rate_limit_exceeded (Retry-After 1–60 s, x-ratelimit-* headers). */
  async admit(request: AdmitRequest): Promise<Admission> {
    const limits = this.effectiveLimits(request.keyLimits);
    const tokens = request.tokens ?? 0;
    const countsTokens = limits.tokensPerMinute > 0 && tokens > 0;
    if (!limits.requestsPerMinute && !limits.imagesPerMinute && !limits.maxInFlight && !request.modelCap && !countsTokens) return NO_SLOTS;
    const input: AdmitInput = {
      keyId: request.keyId,
      limits,
      images: request.images,
      tokens,
      model: request.model,
      modelCap: request.modelCap,
      modelSlots: request.modelSlots,
      leaseId: request.requestId,
      leaseMs: this.deps.leaseMs,
    };
    const release = { keyId: input.keyId, model: input.model, leaseId: input.leaseId, modelSlots: input.modelSlots };

    let result: AdmitResult;
    let decidedBy = this.deps.backend;
    try {
      result = await this.deps.backend.admit(input);
    } catch (error) {
      this.alarm(error as Error);
      decidedBy = this.fallback!;
      result = await decidedBy.admit(input);
    }
    const degraded = decidedBy !== this.deps.backend;
    const headers = {
      ...windowHeaders('requests', result.requests),
      ...windowHeaders('images', result.images),
      ...windowHeaders('tokens', result.tokens),
      ...(degraded ? { [DEGRADED_HEADER]: 'redis-unavailable' } : {}),
    };

    if (!result.admitted) {
      this.counters.refused++;
      this.deps.metrics?.rateLimitRejected(result.reasons[0]);
      const overLimit = result.reasons.includes('images_over_limit') || result.reasons.includes('tokens_over_limit');
      throw rateLimited(refusalMessage(result.reasons[0], request, limits), result.retryAfterMs / 1000, {
        ...headers,
        // Waiting cannot help a request larger than the whole per-minute allowance.
        ...(overLimit ? { 'x-should-retry': 'false' } : {}),
      });
    }

    let released = false;
    let tokensSettled = false;
    const settleTokens = async (usedTokens: number) => {
      if (tokensSettled || !countsTokens) return;
      tokensSettled = true;
      const unused = tokens - Math.min(tokens, Math.max(0, usedTokens));
      if (unused === 0) return;
      try {
        await decidedBy.refundTokens({ keyId: request.keyId, tokensPerMinute: limits.tokensPerMinute, tokens: unused });
      } catch (error) {
        // The window refills on its own within a minute; say so rather than fail the response.
        this.deps.logger.warn(
          { err: error, requestId: request.requestId },
          'could not give back unused tokens; the window refills on its own',
        );
      }
    };
    return {
      headers,
      settleTokens,
      release: async (usedTokens?: number) => {
        if (released) return;
        released = true;
        try {
          if (usedTokens !== undefined) await settleTokens(usedTokens);
          await decidedBy.release(release);
          // A script that timed out may still have run in Redis: give those slots back too (best effort).
          if (degraded) await this.deps.backend.release(release).catch(() => {});
        } catch (error) {
          // The slot's lease expires on its own; say so rather than fail the response.
          this.deps.logger.warn(
            { err: error, requestId: request.requestId },
            'could not release a rate-limit slot; it frees itself when its lease expires',
          );
        }
      },
    };
  }

  async close(): Promise<void> {
    await this.deps.backend.close();
    await this.fallback?.close();
  }

  private alarm(error: Error): void {
    this.counters.degraded++;
    this.deps.metrics?.rateLimitDegraded();
    this.unreported++;
    const now = Date.now();
    if (now - this.lastAlarm < 10_000) return;
    this.lastAlarm = now;
    this.deps.logger.error(
      { err: error, degradedAdmissions: this.unreported, totalDegraded: this.counters.degraded },
      'rate-limit backend unreachable: limits are enforced per instance until it is back (failing open)',
    );
    this.unreported = 0;
  }
}

function windowHeaders(name: 'requests' | 'images' | 'tokens', state: WindowState | undefined): Record<string, string> {
  if (!state) return {};
  return {
    [`x-ratelimit-limit-${name}`]: String(state.limit),
    [`x-ratelimit-remaining-${name}`]: String(state.remaining),
    [`x-ratelimit-reset-${name}`]: formatDuration(state.resetMs),
  };
}

/** OpenAI's reset format: "0s", "12ms", "1.5s", "6m0s". */
export function formatDuration(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  if (whole === 0) return '0s';
  if (whole < 1000) return `${whole}ms`;
  const minutes = Math.floor(whole / 60_000);
  const seconds = Number(((whole % 60_000) / 1000).toFixed(3));
  return minutes > 0 ? `${minutes}m${seconds}s` : `${seconds}s`;
}

function refusalMessage(reason: RefusalReason, request: AdmitRequest, limits: KeyLimits): string {
  switch (reason) {
    case 'requests':
      return `Rate limit reached for requests per minute on this API key (limit ${limits.requestsPerMinute}). Please retry after the time in Retry-After.`;
    case 'images':
      return `Rate limit reached for images per minute on this API key (limit ${limits.imagesPerMinute}, this request asks for ${request.images}). Please retry after the time in Retry-After.`;
    case 'images_over_limit':
      return `This request asks for ${request.images} images, more than this API key's limit of ${limits.imagesPerMinute} images per minute. Lower 'n'.`;
    case 'tokens':
      return `Rate limit reached for tokens per minute on this API key (limit ${limits.tokensPerMinute}; this request is counted at its upper bound, ${request.tokens}: the prompt and the most completion tokens it allows, the unused part given back when it ends). Please retry after the time in Retry-After, or lower 'max_tokens'.`;
    case 'tokens_over_limit':
      return `This request may use up to ${request.tokens} tokens (the prompt and the most completion tokens it allows), more than this API key's limit of ${limits.tokensPerMinute} tokens per minute. Lower 'max_tokens' or shorten the messages.`;
    case 'in_flight':
      return `Too many concurrent requests on this API key: at most ${limits.maxInFlight} generation${limits.maxInFlight === 1 ? '' : 's'} may run at once. Retry when one finishes.`;
    case 'model_concurrency':
      return `${request.model} is at its limit of concurrent generations on this server. Please retry shortly.`;
  }
}
