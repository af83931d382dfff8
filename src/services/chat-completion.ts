import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Catalog, TextCatalogModel } from '../catalog/catalog.ts';
import { normalizeChatRequest, resolveMaxOutputTokens } from '../catalog/chat-request.ts';
import { quoteChatRequest, settleChatCost, type ChatPriceQuote } from '../billing/pricing.ts';
import { internalError } from '../domain/errors.ts';
import type { Nanos } from '../domain/money.ts';
import { canonicalJson } from '../domain/canonical-json.ts';
import { sleep } from '../domain/sleep.ts';
import type { Warning } from '../domain/warnings.ts';
import type { Admission, RequestLimiter } from '../limits/limiter.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { ProviderRegistry, ResolvedRoute } from '../providers/registry.ts';
import {
  ProviderError, type ChatCompletionResult, type ChatFinishReason, type ChatLogprobs, type ChatToolCall, type ChatToolCallDelta, type NormalizedChatRequest,
  type ReasoningDetail, type TextAdapter, type TextCallContext,
} from '../providers/types.ts';
import type { Store } from '../store/types.ts';
import type { IdempotencyService } from './idempotency.ts';
import { HeldWork } from './held-work.ts';
import { ATTEMPTS_PER_ROUTE, backoffMs, describeFailure, toGatewayError } from './image-generation.ts';
import { ModelAccess, wrongEndpoint, type Caller } from './model-access.ts';

/** What the request record and the ledger call this endpoint. */
export const CHAT_ENDPOINT = 'chat.completions';

export interface PreparedChatRequest {
  model: TextCatalogModel;
  routes: ResolvedRoute<TextAdapter>[];
  request: NormalizedChatRequest;
  /** Prompt tokens, the most any route counts (exact for deepshi-echo, an upper bound for upstreams): the input side of the hold. */
  promptTokens: number;
  quote: ChatPriceQuote;
  stream: boolean;
  includeUsage: boolean;
  warnings: Warning[];
}

export interface ChatUsage {
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
  /** Of the completion tokens, those spent reasoning (billed as completion tokens). */
  reasoningTokens: number;
}

export interface ChatOutcome {
  content: string;
  finishReason: ChatFinishReason;
  /** The tool calls of the answer, when the model made any. */
  toolCalls?: ChatToolCall[];
  reasoning?: string;
  reasoningDetails?: ReasoningDetail[];
  refusal?: string;
  logprobs?: ChatLogprobs;
  usage: ChatUsage;
  /** The settled charge, in nanos. */
  cost: Nanos;
  warnings: Warning[];
}

export interface ChatExecuteHooks {
  signal: AbortSignal;
  /** Each piece of the answer as the model produces it (streaming sends it at once). */
  onDelta?: TextCallContext['onDelta'];
  /** Each piece of a tool call as the model produces it (streaming only, with onDelta). */
  onToolCallDelta?: TextCallContext['onToolCallDelta'];
  /** Each piece of the reasoning trace, and of a refusal (streaming only, with onDelta). */
  onReasoningDelta?: TextCallContext['onReasoningDelta'];
  onRefusalDelta?: TextCallContext['onRefusalDelta'];
}

/**
 * The chat request path after authentication, the text twin of ImageGenerationService: model → permissions →
 * validation → price → hold → model → settle or release. Same keys, allowlists, limits, balance and ledger as the
 * image endpoints; HTTP framing (JSON or SSE) is the route's business, money is this one's.
 */
export class ChatCompletionService {
  private readonly models: ModelAccess;
  private readonly held: HeldWork;

  constructor(
    private readonly deps: {
      catalog: Catalog;
      registry: ProviderRegistry;
      store: Store;
      logger: Logger;
      generationTimeoutMs: number;
      holdGraceMs: number;
      limiter: RequestLimiter;
      idempotency: IdempotencyService;
      metrics: Metrics;
    },
  ) {
    this.models = new ModelAccess(deps.catalog, deps.registry);
    this.held = new HeldWork(deps);
  }

  get idempotency(): IdempotencyService {
    return this.deps.idempotency;
  }

  /** Resolves and validates: 400/403 as for images, 400 (param `model`) for an image model, then prices the hold. */
  prepare(caller: Caller, body: Record<string, unknown>): PreparedChatRequest {
    const model = this.models.resolve(caller, body.model);
    if (model.kind !== 'text') throw wrongEndpoint(model, 'POST /v1/chat/completions');
    const routes = this.deps.registry.availability(model).routes;
    const envelope = normalizeChatRequest(body, model);
    // Any route may end up serving the request (failover), so the hold covers the largest count.
    const promptTokens = Math.max(...routes.map((route) => route.adapter.countPromptTokens(envelope.request)));
    const maxOutputTokens = resolveMaxOutputTokens(model, promptTokens, envelope.maxTokens);
    const request: NormalizedChatRequest = { ...envelope.request, maxOutputTokens };
    const quote = quoteChatRequest(model, { promptTokens, maxOutputTokens });
    return { model, routes, request, promptTokens, quote, stream: envelope.stream, includeUsage: envelope.includeUsage, warnings: envelope.warnings };
  }

  /** The same per-key limits as images (a chat request is one request and no images) and the model's concurrency cap. */
  admit(caller: Caller, prepared: PreparedChatRequest, requestId: string): Promise<Admission> {
    return this.deps.limiter.admit({
      keyId: caller.keyId,
      keyLimits: caller.limits,
      images: 0,
      model: prepared.model.id,
      modelCap: prepared.model.max_concurrency ?? 0,
      modelSlots: 1,
      requestId,
    });
  }

  /** Reserves the quoted amount; 402 when the balance cannot cover it (nothing changes then). */
  reserve(caller: Caller, prepared: PreparedChatRequest, requestId: string): Promise<void> {
    return this.held.reserve({
      requestId, accountId: caller.accountId, keyId: caller.keyId, model: prepared.model.id, endpoint: CHAT_ENDPOINT, amount: prepared.quote.hold,
    });
  }

  /**
   * Runs a reserved request to its end and resolves the hold exactly once: settled for the tokens used, released when
   * the model failed (nothing is charged for a failed or abandoned completion). Throws a GatewayError after releasing.
   */
  execute(prepared: PreparedChatRequest, requestId: string, hooks: ChatExecuteHooks): Promise<ChatOutcome> {
    return this.held.run((deadline) => this.executeInner(prepared, requestId, hooks, deadline));
  }

  private async executeInner(prepared: PreparedChatRequest, requestId: string, hooks: ChatExecuteHooks, deadline: AbortSignal): Promise<ChatOutcome> {
    const { store, logger } = this.deps;
    const signal = AbortSignal.any([hooks.signal, deadline]);
    let result: ChatCompletionResult;
    try {
      result = await this.completeWithFailover(prepared, signal, hooks);
    } catch (error) {
      await store.releaseReservation(requestId, describeFailure(error)).catch((releaseError) => logger.error({ err: releaseError, requestId }, 'release failed'));
      this.deps.metrics.chatFailed(prepared.model.id);
      throw toGatewayError(error, signal, hooks.signal);
    }
    const usage: ChatUsage = {
      promptTokens: result.usage.inputTokens ?? prepared.promptTokens,
      cachedTokens: result.usage.cachedInputTokens ?? 0,
      completionTokens: result.usage.outputTokens ?? 0,
      reasoningTokens: result.usage.reasoningTokens ?? 0,
    };
    const cost = settleChatCost(prepared.model, prepared.quote, { inputTokens: usage.promptTokens, cachedInputTokens: usage.cachedTokens, outputTokens: usage.completionTokens });
    const settled = await store.settleReservation({
      requestId,
      cost,
      images: 0,
      detail: {
        basis: prepared.quote.basis,
        prompt_tokens: usage.promptTokens,
        cached_tokens: usage.cachedTokens,
        completion_tokens: usage.completionTokens,
        ...(usage.reasoningTokens > 0 ? { reasoning_tokens: usage.reasoningTokens } : {}),
        finish_reason: result.finishReason,
      },
    });
    if (!settled) {
      // Only the sweeper can have resolved it first, which means we overran the hold's expiry: deliver nothing we did not bill.
      logger.error({ requestId }, 'hold was already resolved before settlement');
      this.deps.metrics.chatFailed(prepared.model.id);
      throw internalError();
    }
    this.deps.metrics.chatCompleted(prepared.model.id, { prompt: usage.promptTokens, cachedPrompt: usage.cachedTokens, completion: usage.completionTokens }, cost);
    const outcome: ChatOutcome = { content: result.content, finishReason: result.finishReason, usage, cost, warnings: [...prepared.warnings, ...result.warnings] };
    if (result.toolCalls?.length) outcome.toolCalls = result.toolCalls;
    for (const field of ['reasoning', 'reasoningDetails', 'refusal', 'logprobs'] as const) if (result[field] !== undefined) Object.assign(outcome, { [field]: result[field] });
    return outcome;
  }

  /**
   * Routes in the catalog's order, each tried up to ATTEMPTS_PER_ROUTE times (backoff, Retry-After honoured up to
   * 10 s), as for images: another attempt or the next route only if the upstream refused before accepting the work
   * (connection refused, 429, 5xx) and nothing was streamed to the caller yet.
   */
  private async completeWithFailover(prepared: PreparedChatRequest, signal: AbortSignal, hooks: ChatExecuteHooks): Promise<ChatCompletionResult> {
    let streamed = false;
    // Only for a streaming caller: adapters stream upstream exactly when they are given onDelta. Anything passed on
    // counts as streamed (no retry or failover after it).
    const passOn = <F extends (...args: any[]) => void>(hook: F | undefined): F | undefined =>
      hooks.onDelta && hook
        ? ((...args: Parameters<F>) => {
            streamed = true;
            hook(...args);
          }) as F
        : undefined;
    const context: Omit<TextCallContext, 'signal'> = {
      onDelta: passOn(hooks.onDelta),
      onToolCallDelta: passOn(hooks.onToolCallDelta),
      onReasoningDelta: passOn(hooks.onReasoningDelta),
      onRefusalDelta: passOn(hooks.onRefusalDelta),
    };
    let lastError: unknown;
    const { routes } = prepared;
    for (let position = 0; position < routes.length; position++) {
      const route = routes[position];
      for (let attempt = 0; attempt < ATTEMPTS_PER_ROUTE; attempt++) {
        try {
          const result = await route.adapter.complete(prepared.request, route.target, { signal, ...context });
          this.deps.metrics.upstreamCall(route.adapter.provider, 'ok');
          return result;
        } catch (error) {
          lastError = error;
          const retryable = error instanceof ProviderError && !error.accepted && (error.kind === 'unavailable' || error.kind === 'rate_limited') && !streamed;
          const again = retryable && !signal.aborted && attempt + 1 < ATTEMPTS_PER_ROUTE;
          const failover = retryable && !signal.aborted && !again && position + 1 < routes.length;
          this.deps.metrics.upstreamCall(route.adapter.provider, again ? 'retried' : failover ? 'failed_over' : 'error');
          if (!retryable || signal.aborted) throw error;
          this.deps.logger.warn({ provider: route.adapter.provider, attempt, err: error }, 'upstream failed before accepting the work');
          if (again) await sleep(backoffMs(attempt, (error as ProviderError).retryAfterSeconds), signal);
        }
      }
    }
    throw lastError;
  }

  /** Waits (bounded) for in-flight completions, e.g. on SIGTERM. */
  drain(timeoutMs: number): Promise<boolean> {
    return this.held.drain(timeoutMs);
  }
}

/** "The same request" for an Idempotency-Key: endpoint, model and the validated, normalised request with its framing. */
export function fingerprintChatRequest(prepared: PreparedChatRequest): string {
  const canonical = canonicalJson({
    endpoint: CHAT_ENDPOINT, model: prepared.model.id, stream: prepared.stream, includeUsage: prepared.includeUsage, request: prepared.request,
  });
  return createHash('sha256').update(canonical).digest('hex');
}
