import type { Warning } from '../../domain/warnings.ts';
import { forwardableExtras } from '../shared/forwarded-extras.ts';
import {
  failureFromStatus,
  maxResponseBytes,
  sanitize,
  timeoutsFromOptions,
  upstreamRequest,
  type UpstreamResponse,
} from '../shared/http.ts';
import { isEventStream, isUsableBaseUrl, readApiError } from '../shared/openai-images-wire.ts';
import {
  ProviderError,
  type ChatChoiceResult,
  type ChatCompletionResult,
  type ChatMessage,
  type NormalizedChatRequest,
  type RouteTarget,
  type TextAdapter,
  type TextCallContext,
  type UpstreamUsage,
} from '../types.ts';
import {
  ChatStreamReader,
  readChatCompletion,
  UPSTREAM_CHAT_SERVER,
  type UpstreamAnswer,
  type UpstreamChoice,
} from './openai-chat-wire.ts';
import { answerDetails, reasoningField, reasoningRequestFields } from './reasoning.ts';

/**
 * Any server speaking OpenAI's `/v1/chat/completions` (`provider: openai-compatible` on a text model): OpenAI itself,
 * OpenRouter, vLLM, DeepSeek, another Deepshi...
 *
 * Route: `base_url` or `base_url_env` is REQUIRED (with or without a trailing `/v1`: `/v1/chat/completions` is
 * appended to the base with that `/v1` removed, a path prefix such as OpenRouter's `/api` kept), `credentials_env`
 * optional (sent as `Authorization: Bearer`), `upstream_model` (default: the catalog id), `options`: `timeouts`,
 * `max_response_bytes`, and `max_tokens_field: max_completion_tokens` for upstreams that refuse `max_tokens`
 * (OpenAI's reasoning models); the default is `max_tokens`, which every such server reads.
 *
 * Request (buildChatRequestBody): the caller's forwarded extras and features first, then the fields this adapter
 * owns, so no extra can change the model, the messages, streaming or the token budget. The budget is always sent
 * (the request's max_tokens, else the model's default) because the hold is priced on it. A streaming call always
 * asks for `stream_options: {include_usage: true}`: the final usage chunk is what the request is billed on.
 *
 * Tokens before the call (countPromptTokens): an UPPER BOUND, never an estimate. Byte-level BPE tokenizers (OpenAI's,
 * Llama's, DeepSeek's, Qwen's...) cover at least one UTF-8 byte per token, so a text's UTF-8 byte length bounds its
 * tokens. Each message adds its role, name, tool_call_id and tool_calls (as JSON) in bytes plus MESSAGE_OVERHEAD
 * tokens for the chat template's markers; the reply's priming adds REPLY_OVERHEAD; forwarded fields the upstream
 * counts as prompt (tools, a response schema...) add their JSON byte length. The hold is priced on this bound, so it
 * always covers the prompt the upstream bills; the charge uses the upstream's own count.
 *
 * Usage (readChatUsage): `prompt_tokens` (with `prompt_tokens_details.cached_tokens`) and `completion_tokens` as the
 * upstream reports them. A field it does not report is billed at our upper bound instead: the prompt bound above,
 * and for the completion its UTF-8 byte length capped at the max tokens sent, with a warning. The service clamps the
 * charge to the hold either way.
 *
 * Tool calls (when the model lists `tools`, the validator forwards `tools`, `tool_choice`, `parallel_tool_calls`):
 * `message.tool_calls` of a completion, or the `delta.tool_calls` fragments of a stream, accumulated per call by their
 * `index` and passed on as they arrive, renumbered 0, 1, … in the order the calls start (the first piece of a call
 * carries its id and name, later ones argument fragments; see ChatToolCallDelta). Finish `tool_calls` is kept. Their
 * JSON counts toward the completion bound when the upstream reports no usage.
 *
 * Several choices (`n` > 1, when the catalog's `max_choices` allows it): `n` is sent, and every choice the upstream
 * answers comes back under its index (streamed: each chunk's `index`); the usage it reports covers them all (the
 * prompt once, the completion tokens of every choice).
 */

const PROVIDER = UPSTREAM_CHAT_SERVER;

/** Chat-template tokens per message (OpenAI's documented count is 3–4); generous for other templates. */
export const MESSAGE_OVERHEAD = 8;
/** Tokens priming the assistant's reply. */
export const REPLY_OVERHEAD = 8;

/** Fields this adapter writes itself: an extra of the same name is dropped with a warning. */
const OWNED_FIELDS = [
  'model',
  'messages',
  'stream',
  'stream_options',
  'max_tokens',
  'max_completion_tokens',
  'n',
  'stop',
  'temperature',
  'top_p',
  'seed',
  'frequency_penalty',
  'presence_penalty',
  'logit_bias',
  'reasoning_effort',
  'reasoning',
] as const;

/**
 * Feature fields the request validator forwards (only when the model lists the feature): passed as validated, not
 * filtered like unknown extras (a tool description or a JSON schema may legitimately hold a URL).
 */
const FEATURE_FIELDS = new Set([
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'functions',
  'function_call',
  'logprobs',
  'top_logprobs',
  'response_format',
]);

export class OpenAICompatibleChatAdapter implements TextAdapter {
  readonly provider = 'openai-compatible';
  readonly modality = 'text';

  isConfigured(route: RouteTarget): boolean {
    return isUsableBaseUrl(route.baseUrl);
  }

  countPromptTokens(request: Pick<NormalizedChatRequest, 'messages'> & Partial<Pick<NormalizedChatRequest, 'extra'>>): number {
    return promptTokenBound(request.messages, request.extra ?? {});
  }

  async complete(request: NormalizedChatRequest, route: RouteTarget, context: TextCallContext): Promise<ChatCompletionResult> {
    const stream = context.onDelta !== undefined;
    const { body, warnings } = buildChatRequestBody(request, route, stream);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: stream ? 'text/event-stream' : 'application/json',
    };
    if (route.credential) headers.authorization = `Bearer ${route.credential}`;
    // `reasoning.exclude`: the model reasons, the trace stays out of the answer (honoured here whatever the route takes).
    const showReasoning = request.reasoning?.exclude !== true;
    const wanted = request.n ?? 1;
    const reader = stream
      ? new ChatStreamReader(
          {
            onDelta: context.onDelta!,
            onToolCallDelta: context.onToolCallDelta,
            onReasoningDelta: showReasoning ? context.onReasoningDelta : undefined,
            onRefusalDelta: context.onRefusalDelta,
          },
          wanted,
        )
      : undefined;
    const response = await upstreamRequest({
      url: chatEndpoint(route.baseUrl!),
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      signal: context.signal,
      timeouts: timeoutsFromOptions(route.options),
      maxBytes: maxResponseBytes(route.options),
      provider: PROVIDER,
      // Once sent, the upstream may be generating (and billing) the answer: it is never sent again.
      sentMeansAccepted: true,
      onChunk: reader
        ? (chunk, head) => {
            if (head.status === 200 && isEventStream(head.headers)) reader.push(chunk);
          }
        : undefined,
    });
    if (response.status !== 200) throw chatFailure(response);
    let answer: UpstreamAnswer;
    if (reader && isEventStream(response.headers)) {
      answer = reader.finish();
    } else {
      // Not streaming, or a server that ignored `stream` and answered JSON: each choice's whole answer as one delta.
      answer = readChatCompletion(response, wanted);
      if (context.onDelta) for (const [index, choice] of answer.choices.entries()) replayChoice(index, choice, context, showReasoning);
    }
    if (!showReasoning) for (const choice of answer.choices) delete choice.reasoning;
    return toResult(answer, request, warnings);
  }
}

/** A whole choice passed to a streaming caller's hooks at once (an upstream that answered JSON to a stream request). */
function replayChoice(index: number, choice: UpstreamChoice, context: TextCallContext, showReasoning: boolean): void {
  if (showReasoning && choice.reasoning) context.onReasoningDelta?.(index, choice.reasoning.text, choice.reasoning.details);
  if (choice.content !== '')
    context.onDelta?.(index, choice.content, choice.logprobs?.content ? { content: choice.logprobs.content, refusal: null } : undefined);
  if (choice.refusal) context.onRefusalDelta?.(index, choice.refusal);
  choice.toolCalls?.forEach((call, callIndex) => {
    context.onToolCallDelta?.(index, {
      index: callIndex,
      id: call.id,
      type: 'function',
      function: { name: call.function.name, arguments: '' },
    });
    if (call.function.arguments !== '')
      context.onToolCallDelta?.(index, { index: callIndex, function: { arguments: call.function.arguments } });
  });
}

/** `/v1/chat/completions` on the base URL with any trailing `/v1` removed; a path prefix and query string are kept. */
export function chatEndpoint(baseUrl: string): string {
  const url = new URL(baseUrl);
  const prefix = url.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  url.pathname = `${prefix}/v1/chat/completions`;
  return url.toString();
}

/** The upper bound on prompt tokens described above: UTF-8 bytes of everything the upstream reads as prompt. */
export function promptTokenBound(messages: ChatMessage[], extra: Record<string, unknown>): number {
  let total = REPLY_OVERHEAD;
  for (const message of messages) {
    total += MESSAGE_OVERHEAD + bytes(message.role) + bytes(message.content);
    if (message.name !== undefined) total += bytes(message.name);
    if (message.toolCallId !== undefined) total += bytes(message.toolCallId);
    if (message.toolCalls?.length) total += bytes(JSON.stringify(message.toolCalls));
  }
  for (const [name, value] of Object.entries(extra)) total += bytes(name) + bytes(JSON.stringify(value) ?? '');
  return total;
}

function bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/**
 * The upstream request body, every field named. Extras (unknown fields, URL/webhook ones dropped with a warning) and
 * validated features first, then the fields this adapter owns. Sampling values are present only when the catalog
 * says the model honours them (the validator dropped the others with a warning).
 */
export function buildChatRequestBody(
  request: NormalizedChatRequest,
  route: RouteTarget,
  stream: boolean,
): { body: Record<string, unknown>; warnings: Warning[] } {
  const features: Record<string, unknown> = {};
  const unknown: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(request.extra)) (FEATURE_FIELDS.has(name) ? features : unknown)[name] = value;
  const forwarded = forwardableExtras(unknown, { owned: OWNED_FIELDS, provider: PROVIDER });
  const maxTokensField = route.options.max_tokens_field === 'max_completion_tokens' ? 'max_completion_tokens' : 'max_tokens';
  const { sampling } = request;
  const reasoning = reasoningRequestFields(request.reasoning, reasoningField(route.options), request.model);
  const body: Record<string, unknown> = {
    ...forwarded.fields,
    ...features,
    ...reasoning.fields,
    model: route.upstreamModel ?? request.model,
    messages: request.messages.map(wireMessage),
    // Only above 1 (the catalog's max_choices allowed it): one call answers every choice.
    n: request.n,
    [maxTokensField]: request.maxOutputTokens,
    stop: request.stop.length > 0 ? request.stop : undefined,
    temperature: sampling.temperature,
    top_p: sampling.topP,
    seed: sampling.seed,
    frequency_penalty: sampling.frequencyPenalty,
    presence_penalty: sampling.presencePenalty,
    logit_bias: sampling.logitBias,
    stream,
    // Always, when streaming: the final usage chunk is what the request is billed on.
    stream_options: stream ? { include_usage: true } : undefined,
  };
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
  return { body, warnings: [...forwarded.warnings, ...reasoning.warnings] };
}

function wireMessage(message: ChatMessage): Record<string, unknown> {
  const wire: Record<string, unknown> = { role: message.role, content: message.content };
  // OpenAI's shape for an assistant turn that only calls tools: content null.
  if (message.toolCalls?.length && message.content === '') wire.content = null;
  if (message.name !== undefined) wire.name = message.name;
  if (message.toolCallId !== undefined) wire.tool_call_id = message.toolCallId;
  if (message.toolCalls?.length) wire.tool_calls = message.toolCalls;
  return wire;
}

function toResult(answer: UpstreamAnswer, request: NormalizedChatRequest, warnings: Warning[]): ChatCompletionResult {
  const out = [...warnings];
  const reported = answer.usage;
  const usage: UpstreamUsage = {
    inputTokens: reported.promptTokens ?? promptTokenBound(request.messages, request.extra),
    cachedInputTokens: reported.promptTokens !== undefined ? (reported.cachedTokens ?? 0) : 0,
    // Without a reported count: every choice's bytes, each at most the budget sent (each choice has its own).
    outputTokens:
      reported.completionTokens ??
      answer.choices.reduce((sum, choice) => sum + Math.min(completionBytes(choice), request.maxOutputTokens), 0),
  };
  if (reported.reasoningTokens !== undefined) usage.reasoningTokens = reported.reasoningTokens;
  if (reported.promptTokens === undefined || reported.completionTokens === undefined) {
    out.push({
      type: 'other',
      param: 'usage',
      message: `${PROVIDER} did not report its token usage; Deepshi billed its own upper bounds (prompt and completion UTF-8 bytes), never more than the hold.`,
    });
  }
  const wanted = request.n ?? 1;
  if (answer.choices.length < wanted) {
    out.push({
      type: 'other',
      param: 'n',
      message: `${PROVIDER} answered ${answer.choices.length} of the ${wanted} choices asked for; billed for what it reported.`,
    });
  }
  return { choices: answer.choices.map(toChoice), usage, warnings: out };
}

function toChoice(answer: UpstreamChoice): ChatChoiceResult {
  const result: ChatChoiceResult = { content: answer.content, finishReason: answer.finishReason };
  if (answer.toolCalls?.length) result.toolCalls = answer.toolCalls;
  if (answer.refusal) result.refusal = answer.refusal;
  if (answer.logprobs) result.logprobs = answer.logprobs;
  if (answer.reasoning) {
    if (answer.reasoning.text !== '') result.reasoning = answer.reasoning.text;
    const details = answerDetails(answer.reasoning.text, answer.reasoning.details);
    if (details) result.reasoningDetails = details;
  }
  return result;
}

/** Everything the model produced in one choice, in UTF-8 bytes: the bound on its completion tokens when it reports none. */
function completionBytes(answer: UpstreamChoice): number {
  let total = bytes(answer.content) + bytes(answer.refusal ?? '') + bytes(answer.reasoning?.text ?? '');
  if (answer.toolCalls?.length) total += bytes(JSON.stringify(answer.toolCalls));
  return total;
}

/**
 * A non-200 answer: OpenAI's error envelope, message sanitised. 429 (with Retry-After) and 5xx come before
 * acceptance (retried, failed over); 401/403 and a rejected `model` are the operator's; other 400s name the param.
 */
function chatFailure(response: UpstreamResponse): ProviderError {
  const error = readApiError(response.json());
  if (
    (response.status === 400 || response.status === 422 || response.status === 404) &&
    (error.param === 'model' || error.code === 'model_not_found')
  ) {
    return new ProviderError('misconfigured', `${PROVIDER} rejected the configured model: ${sanitize(error.message ?? '')}`);
  }
  if (response.status === 400 && error.code === 'content_filter')
    return new ProviderError('refused', sanitize(error.message ?? "The prompt was refused by the model's content filter."));
  return failureFromStatus(PROVIDER, response, { message: error.message, param: error.param });
}
