import { createHash } from 'node:crypto';
import type { TextCatalogModel } from '../catalog/catalog.ts';
import { normalizeChatRequest, resolveMaxOutputTokens } from '../catalog/chat-request.ts';
import { quoteChatRequest, settleChatCost, type ChatPriceQuote } from '../billing/pricing.ts';
import { canonicalJson } from '../domain/canonical-json.ts';
import type { Nanos } from '../domain/money.ts';
import type { NormalizedChatRequest } from '../domain/requests.ts';
import type { Warning } from '../domain/warnings.ts';
import type { ResolvedRoute } from '../providers/registry.ts';
import type { ChatChoiceResult, ChatCompletionResult, TextAdapter, TextCallContext } from '../providers/types.ts';
import { BilledService } from './billed-service.ts';
import type { BilledResult, BilledTicket } from './billed-work.ts';
import { wrongEndpoint, type Caller } from './model-access.ts';

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

/** One choice of the answer as the adapter gave it: message, finish reason, tool calls, reasoning, refusal, logprobs. */
export type ChatChoiceOutcome = ChatChoiceResult;

/**
 * The adapter's answer as the caller gets it: its choices (one per choice, in index order), with the usage we settle
 * (the prompt once, the completion tokens of every choice) and the charge; warnings are the request's and the adapter's.
 */
export interface ChatOutcome extends Omit<ChatCompletionResult, 'usage'> {
  usage: ChatUsage;
  /** The settled charge, in nanos. */
  cost: Nanos;
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
 * validation → price, then the runner's billed path (billed-work.ts). Same keys, allowlists, limits, balance and
 * ledger as the image endpoints; HTTP framing (JSON or SSE) is the route's business, money is the runner's.
 */
export class ChatCompletionService extends BilledService<PreparedChatRequest, ChatExecuteHooks, ChatOutcome> {
  /**
   * A chat request is one request, no images, one upstream call; the key's tokens per minute take it at its upper bound
   * (given back down to its usage when it is settled).
   */
  protected ticket(prepared: PreparedChatRequest): BilledTicket {
    return {
      model: prepared.model.id,
      endpoint: CHAT_ENDPOINT,
      hold: prepared.quote.hold,
      images: 0,
      tokens: tokenBound(prepared),
      modelCap: prepared.model.max_concurrency ?? 0,
      modelSlots: 1,
    };
  }

  /** Resolves and validates: 400/403 as for images, 400 (param `model`) for an image model, then prices the hold. */
  prepare(caller: Caller, body: Record<string, unknown>): PreparedChatRequest {
    const model = this.deps.models.resolve(caller, body.model);
    if (model.kind !== 'text') throw wrongEndpoint(model, 'POST /v1/chat/completions');
    const routes = this.deps.registry.availability(model).routes;
    const envelope = normalizeChatRequest(body, model);
    // Any route may end up serving the request (failover), so the hold covers the largest count.
    const promptTokens = Math.max(...routes.map((route) => route.adapter.countPromptTokens(envelope.request)));
    const maxOutputTokens = resolveMaxOutputTokens(model, promptTokens, envelope.maxTokens);
    const request: NormalizedChatRequest = { ...envelope.request, maxOutputTokens };
    // Each choice has the whole completion budget: the hold covers all of them (the prompt is billed once).
    const quote = quoteChatRequest(model, { promptTokens, maxOutputTokens, choices: request.n ?? 1 });
    return {
      model,
      routes,
      request,
      promptTokens,
      quote,
      stream: envelope.stream,
      includeUsage: envelope.includeUsage,
      warnings: envelope.warnings,
    };
  }

  /**
   * Runs a reserved request to its end and resolves the hold exactly once: settled for the tokens used, released when
   * the model failed (nothing is charged for a failed or abandoned completion). Throws a GatewayError after releasing.
   */
  async execute(prepared: PreparedChatRequest, requestId: string, hooks: ChatExecuteHooks): Promise<ChatOutcome> {
    let outcome: ChatOutcome;
    try {
      outcome = await this.deps.runner.run(requestId, hooks.signal, (signal) => this.complete(prepared, hooks, signal));
    } catch (error) {
      this.deps.metrics.chatFailed(prepared.model.id);
      throw error;
    }
    const { usage } = outcome;
    this.deps.metrics.chatCompleted(
      prepared.model.id,
      { prompt: usage.promptTokens, cachedPrompt: usage.cachedTokens, completion: usage.completionTokens },
      outcome.cost,
    );
    return outcome;
  }

  /**
   * One completion through the runner's retries and failover, which stop once anything was streamed to the caller.
   * Priced at the usage the model reports (our prompt bound when it reports none).
   */
  private async complete(prepared: PreparedChatRequest, hooks: ChatExecuteHooks, signal: AbortSignal): Promise<BilledResult<ChatOutcome>> {
    let streamed = false;
    // Only for a streaming caller: adapters stream upstream exactly when they are given onDelta. Anything passed on
    // counts as streamed (no retry or failover after it).
    const passOn = <F extends (...args: never[]) => void>(hook: F | undefined): F | undefined =>
      hooks.onDelta && hook
        ? (((...args: Parameters<F>) => {
            streamed = true;
            hook(...args);
          }) as F)
        : undefined;
    const context: Omit<TextCallContext, 'signal'> = {
      onDelta: passOn(hooks.onDelta),
      onToolCallDelta: passOn(hooks.onToolCallDelta),
      onReasoningDelta: passOn(hooks.onReasoningDelta),
      onRefusalDelta: passOn(hooks.onRefusalDelta),
    };
    const result: ChatCompletionResult = await this.deps.runner.withFailover(
      prepared.routes,
      signal,
      (route) => route.adapter.complete(prepared.request, route.target, { signal, ...context }),
      () => !streamed,
    );
    const usage: ChatUsage = {
      promptTokens: result.usage.inputTokens ?? prepared.promptTokens,
      cachedTokens: result.usage.cachedInputTokens ?? 0,
      completionTokens: result.usage.outputTokens ?? 0,
      reasoningTokens: result.usage.reasoningTokens ?? 0,
    };
    const cost = settleChatCost(prepared.model, prepared.quote, {
      inputTokens: usage.promptTokens,
      cachedInputTokens: usage.cachedTokens,
      outputTokens: usage.completionTokens,
    });
    const outcome: ChatOutcome = { choices: result.choices, usage, cost, warnings: [...prepared.warnings, ...result.warnings] };
    const detail = {
      basis: prepared.quote.basis,
      prompt_tokens: usage.promptTokens,
      cached_tokens: usage.cachedTokens,
      completion_tokens: usage.completionTokens,
      ...(usage.reasoningTokens > 0 ? { reasoning_tokens: usage.reasoningTokens } : {}),
      ...(result.choices.length > 1
        ? { choices: result.choices.length, finish_reasons: result.choices.map((choice) => choice.finishReason) }
        : { finish_reason: result.choices[0]?.finishReason ?? 'stop' }),
    };
    return { value: outcome, settlement: { cost, images: 0, detail, tokens: usage.promptTokens + usage.completionTokens } };
  }
}

/**
 * The most tokens a request can use (prompt bound + the completion budget of every choice): what the tokens-per-minute
 * window admits it at.
 */
export function tokenBound(prepared: PreparedChatRequest): number {
  return prepared.promptTokens + prepared.request.maxOutputTokens * (prepared.request.n ?? 1);
}

/** "The same request" for an Idempotency-Key: endpoint, model and the validated, normalised request with its framing. */
export function fingerprintChatRequest(prepared: PreparedChatRequest): string {
  const canonical = canonicalJson({
    endpoint: CHAT_ENDPOINT,
    model: prepared.model.id,
    stream: prepared.stream,
    includeUsage: prepared.includeUsage,
    request: prepared.request,
  });
  return createHash('sha256').update(canonical).digest('hex');
}
