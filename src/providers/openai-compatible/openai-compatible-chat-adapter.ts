import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Warning } from '../../domain/warnings.ts';
import { forwardableExtras } from '../shared/forwarded-extras.ts';
import { failureFromStatus, maxResponseBytes, sanitize, timeoutsFromOptions, upstreamRequest, type UpstreamResponse } from '../shared/http.ts';
import { isEventStream, isUsableBaseUrl, readApiError, SseDecoder } from '../shared/openai-images-wire.ts';
import {
  ProviderError, type ChatCompletionResult, type ChatFinishReason, type ChatMessage, type ChatToolCall, type ChatToolCallDelta,
  type NormalizedChatRequest, type RouteTarget, type TextAdapter, type TextCallContext, type UpstreamUsage,
} from '../types.ts';

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
 * Not supported yet: logprobs in the answer (the catalog must not list `logprobs`), and the legacy
 * `function_call` answer (its finish is reported as `stop`).
 */

const PROVIDER = 'the upstream chat server';

/** Chat-template tokens per message (OpenAI's documented count is 3–4); generous for other templates. */
export const MESSAGE_OVERHEAD = 8;
/** Tokens priming the assistant's reply. */
export const REPLY_OVERHEAD = 8;

/** Fields this adapter writes itself: an extra of the same name is dropped with a warning. */
const OWNED_FIELDS = [
  'model', 'messages', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'n', 'stop',
  'temperature', 'top_p', 'seed', 'frequency_penalty', 'presence_penalty',
] as const;

/**
 * Feature fields the request validator forwards (only when the model lists the feature): passed as validated, not
 * filtered like unknown extras (a tool description or a JSON schema may legitimately hold a URL).
 */
const FEATURE_FIELDS = new Set(['tools', 'tool_choice', 'parallel_tool_calls', 'functions', 'function_call', 'logprobs', 'top_logprobs', 'response_format']);

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
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: stream ? 'text/event-stream' : 'application/json' };
    if (route.credential) headers.authorization = `Bearer ${route.credential}`;
    const reader = stream ? new ChatStreamReader(context.onDelta!, context.onToolCallDelta) : undefined;
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
      onChunk: reader ? (chunk, head) => {
        if (head.status === 200 && isEventStream(head.headers)) reader.push(chunk);
      } : undefined,
    });
    if (response.status !== 200) throw chatFailure(response);
    let answer: UpstreamAnswer;
    if (reader && isEventStream(response.headers)) {
      answer = reader.finish();
    } else {
      // Not streaming, or a server that ignored `stream` and answered JSON: one delta with the whole answer.
      answer = readChatCompletion(response);
      if (context.onDelta && answer.content !== '') context.onDelta(answer.content);
      if (context.onDelta) {
        answer.toolCalls?.forEach((call, index) => {
          context.onToolCallDelta?.({ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } });
          if (call.function.arguments !== '') context.onToolCallDelta?.({ index, function: { arguments: call.function.arguments } });
        });
      }
    }
    return toResult(answer, request, warnings);
  }
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
  const body: Record<string, unknown> = {
    ...forwarded.fields,
    ...features,
    model: route.upstreamModel ?? request.model,
    messages: request.messages.map(wireMessage),
    [maxTokensField]: request.maxOutputTokens,
    stop: request.stop.length > 0 ? request.stop : undefined,
    temperature: sampling.temperature,
    top_p: sampling.topP,
    seed: sampling.seed,
    frequency_penalty: sampling.frequencyPenalty,
    presence_penalty: sampling.presencePenalty,
    stream,
    // Always, when streaming: the final usage chunk is what the request is billed on.
    stream_options: stream ? { include_usage: true } : undefined,
  };
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
  return { body, warnings: forwarded.warnings };
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

/** What the upstream answered, before the usage rule is applied. */
interface UpstreamAnswer {
  content: string;
  finishReason: ChatFinishReason;
  toolCalls?: ChatToolCall[];
  usage: ReportedUsage;
  refusal?: string;
}

interface ReportedUsage {
  promptTokens?: number;
  cachedTokens?: number;
  completionTokens?: number;
  reasoningTokens?: number;
}

const tokenCount = z.number().int().min(0).max(1e9);

/** OpenAI's usage object; fields that are missing or malformed count as not reported. */
export function readChatUsage(raw: unknown): ReportedUsage {
  if (raw === null || typeof raw !== 'object') return {};
  const usage = raw as Record<string, unknown>;
  const read = (value: unknown) => (tokenCount.safeParse(value).success ? (value as number) : undefined);
  const details = (value: unknown) => (value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {});
  const promptTokens = read(usage.prompt_tokens);
  const completionTokens = read(usage.completion_tokens);
  let cachedTokens = read(details(usage.prompt_tokens_details).cached_tokens);
  if (cachedTokens !== undefined && (promptTokens === undefined || cachedTokens > promptTokens)) cachedTokens = undefined;
  let reasoningTokens = read(details(usage.completion_tokens_details).reasoning_tokens);
  if (reasoningTokens !== undefined && (completionTokens === undefined || reasoningTokens > completionTokens)) reasoningTokens = undefined;
  const out: ReportedUsage = {};
  if (promptTokens !== undefined) out.promptTokens = promptTokens;
  if (cachedTokens !== undefined) out.cachedTokens = cachedTokens;
  if (completionTokens !== undefined) out.completionTokens = completionTokens;
  if (reasoningTokens !== undefined) out.reasoningTokens = reasoningTokens;
  return out;
}

/** OpenAI's finish reasons onto ours; a legacy function call (not supported here) ends the answer as `stop`. */
export function mapFinishReason(raw: unknown): ChatFinishReason {
  if (raw === 'length') return 'length';
  if (raw === 'content_filter') return 'content_filter';
  if (raw === 'tool_calls') return 'tool_calls';
  return 'stop';
}

/**
 * Tool call arguments: JSON text, as OpenAI sends them. Lenient like the rest: a server that sends them as an object
 * (some OpenAI-compatible servers do) gets them serialised.
 */
const toolArguments = z.union([z.string(), z.record(z.string(), z.unknown()).transform((value) => JSON.stringify(value))]);

/** A complete tool call in a completion's `message.tool_calls`: a function call with an id and a name. */
const toolCallSchema = z.object({
  id: z.string().min(1),
  type: z.literal('function').nullish(),
  function: z.object({ name: z.string().min(1), arguments: toolArguments.nullish() }),
});

/** A piece of one in a chunk's `delta.tool_calls`: every field optional but the shapes checked. */
const toolCallDeltaSchema = z.object({
  index: z.number().int().min(0).max(1e6).nullish(),
  id: z.string().nullish(),
  type: z.literal('function').nullish(),
  function: z.object({ name: z.string().nullish(), arguments: toolArguments.nullish() }).nullish(),
});

const completionSchema = z.object({
  choices: z
    .array(
      z.object({
        message: z
          .object({ content: z.string().nullish(), refusal: z.string().nullish(), tool_calls: z.array(toolCallSchema).nullish() })
          .nullish(),
        finish_reason: z.string().nullish(),
      }),
    )
    .min(1),
  usage: z.unknown().optional(),
});

function readChatCompletion(response: UpstreamResponse): UpstreamAnswer {
  const json = response.json();
  const parsed = completionSchema.safeParse(json);
  if (!parsed.success) throw new ProviderError('failed', `${PROVIDER} sent a response that is not a chat completion`, { accepted: true });
  const [choice] = parsed.data.choices;
  const answer: UpstreamAnswer = {
    content: choice.message?.content ?? '',
    finishReason: mapFinishReason(choice.finish_reason),
    usage: readChatUsage(parsed.data.usage),
  };
  if (choice.message?.refusal) answer.refusal = choice.message.refusal;
  const toolCalls = choice.message?.tool_calls ?? [];
  if (toolCalls.length > 0) {
    answer.toolCalls = toolCalls.map((call) => ({ id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments ?? '' } }));
  }
  return answer;
}

const chunkSchema = z.object({
  choices: z
    .array(
      z.object({
        delta: z
          .object({ content: z.string().nullish(), refusal: z.string().nullish(), tool_calls: z.array(toolCallDeltaSchema).nullish() })
          .nullish(),
        finish_reason: z.string().nullish(),
      }),
    )
    .nullish(),
  usage: z.unknown().optional(),
});

/**
 * Reads the upstream's SSE stream as it arrives: `data: {chat.completion.chunk}` events, each `delta.content` passed
 * on at once, the finish reason, the usage chunk (asked for with include_usage), then `data: [DONE]`. An error event
 * or a chunk that is not JSON ends the call as failed; the upstream had accepted the work.
 */
class ChatStreamReader {
  private content = '';
  private refusal = '';
  private finishReason: ChatFinishReason | undefined;
  private usage: ReportedUsage = {};
  private done = false;
  private readonly toolCalls = new ToolCallAccumulator();
  private readonly decoder = new SseDecoder((event) => this.event(event.data));

  constructor(
    private readonly onDelta: (text: string) => void,
    private readonly onToolCallDelta: ((delta: ChatToolCallDelta) => void) | undefined,
  ) {}

  push(chunk: Buffer): void {
    this.decoder.push(chunk);
  }

  finish(): UpstreamAnswer {
    this.decoder.end();
    if (!this.done && this.finishReason === undefined) {
      throw new ProviderError('failed', `${PROVIDER} ended the stream before the answer was complete`, { accepted: true });
    }
    const answer: UpstreamAnswer = { content: this.content, finishReason: this.finishReason ?? 'stop', usage: this.usage };
    if (this.refusal) answer.refusal = this.refusal;
    const toolCalls = this.toolCalls.finish();
    if (toolCalls.length > 0) answer.toolCalls = toolCalls;
    return answer;
  }

  private event(data: string): void {
    if (this.done) return;
    if (data.trim() === '[DONE]') {
      this.done = true;
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      throw new ProviderError('failed', `${PROVIDER} sent a stream chunk that is not JSON`, { accepted: true });
    }
    if (json !== null && typeof json === 'object' && 'error' in json && (json as { error: unknown }).error) {
      const error = readApiError(json);
      throw new ProviderError('failed', sanitize(`${PROVIDER} failed mid-stream${error.message ? `: ${error.message}` : ''}`), { accepted: true });
    }
    const parsed = chunkSchema.safeParse(json);
    if (!parsed.success) throw new ProviderError('failed', `${PROVIDER} sent a stream chunk that is not a chat.completion.chunk`, { accepted: true });
    if (parsed.data.usage !== undefined && parsed.data.usage !== null) this.usage = readChatUsage(parsed.data.usage);
    const choice = parsed.data.choices?.[0];
    if (!choice) return;
    const text = choice.delta?.content;
    if (text) {
      this.content += text;
      this.onDelta(text);
    }
    if (choice.delta?.refusal) this.refusal += choice.delta.refusal;
    for (const piece of choice.delta?.tool_calls ?? []) {
      for (const delta of this.toolCalls.push(piece)) this.onToolCallDelta?.(delta);
    }
    if (choice.finish_reason) this.finishReason = mapFinishReason(choice.finish_reason);
  }
}

/**
 * Tool calls of a stream, accumulated from their pieces. A piece names its call by `index` (a piece without one
 * continues the last call, or starts a new one when it brings a new id: some servers omit the index). Calls are
 * renumbered 0, 1, … as they start, so the pieces passed on always describe a well-formed sequence: the first piece of
 * a call with id, type, name and empty arguments, then argument fragments. A call without an id gets one of ours; one
 * that never got a name makes the answer malformed.
 */
class ToolCallAccumulator {
  private readonly calls: Array<{ upstreamIndex: number | undefined; call: ChatToolCall; announced: boolean }> = [];

  push(piece: z.infer<typeof toolCallDeltaSchema>): ChatToolCallDelta[] {
    const upstreamIndex = piece.index ?? undefined;
    let index = upstreamIndex !== undefined ? this.calls.findIndex((entry) => entry.upstreamIndex === upstreamIndex) : this.calls.length - 1;
    if (index >= 0 && upstreamIndex === undefined && piece.id && piece.id !== this.calls[index].call.id) index = -1;
    if (index < 0) {
      index = this.calls.length;
      const id = piece.id || `call_${randomUUID().replace(/-/g, '').slice(0, 24)}`;
      this.calls.push({ upstreamIndex, call: { id, type: 'function', function: { name: '', arguments: '' } }, announced: false });
    }
    const entry = this.calls[index];
    entry.call.function.name += piece.function?.name ?? '';
    const fragment = piece.function?.arguments ?? '';
    entry.call.function.arguments += fragment;
    const out: ChatToolCallDelta[] = [];
    if (!entry.announced) {
      // Held until the name is known (it comes with the first piece from OpenAI); then the arguments so far follow.
      if (entry.call.function.name === '') return out;
      entry.announced = true;
      out.push({ index, id: entry.call.id, type: 'function', function: { name: entry.call.function.name, arguments: '' } });
      if (entry.call.function.arguments !== '') out.push({ index, function: { arguments: entry.call.function.arguments } });
    } else if (fragment !== '') {
      out.push({ index, function: { arguments: fragment } });
    }
    return out;
  }

  finish(): ChatToolCall[] {
    if (this.calls.some((entry) => !entry.announced)) {
      throw new ProviderError('failed', `${PROVIDER} streamed a tool call without a function name`, { accepted: true });
    }
    return this.calls.map((entry) => entry.call);
  }
}

/**
 * The result with the billing rule applied: the upstream's counts where it reported them; where it did not, our upper
 * bounds (prompt: countPromptTokens; completion: the answer's UTF-8 bytes, at most the max tokens sent), with a warning.
 */
function toResult(answer: UpstreamAnswer, request: NormalizedChatRequest, warnings: Warning[]): ChatCompletionResult {
  const out = [...warnings];
  const reported = answer.usage;
  const usage: UpstreamUsage = {
    inputTokens: reported.promptTokens ?? promptTokenBound(request.messages, request.extra),
    cachedInputTokens: reported.promptTokens !== undefined ? (reported.cachedTokens ?? 0) : 0,
    outputTokens: reported.completionTokens ?? Math.min(bytes(answer.content) + (answer.toolCalls?.length ? bytes(JSON.stringify(answer.toolCalls)) : 0), request.maxOutputTokens),
  };
  if (reported.reasoningTokens !== undefined) usage.reasoningTokens = reported.reasoningTokens;
  if (reported.promptTokens === undefined || reported.completionTokens === undefined) {
    out.push({
      type: 'other',
      param: 'usage',
      message: `${PROVIDER} did not report its token usage; Deepshi billed its own upper bounds (prompt and completion UTF-8 bytes), never more than the hold.`,
    });
  }
  if (answer.refusal) out.push({ type: 'other', message: sanitize(`The model refused: ${answer.refusal}`) });
  const result: ChatCompletionResult = { content: answer.content, finishReason: answer.finishReason, usage, warnings: out };
  if (answer.toolCalls?.length) result.toolCalls = answer.toolCalls;
  return result;
}

/**
 * A non-200 answer: OpenAI's error envelope, message sanitised. 429 (with Retry-After) and 5xx come before
 * acceptance (retried, failed over); 401/403 and a rejected `model` are the operator's; other 400s name the param.
 */
function chatFailure(response: UpstreamResponse): ProviderError {
  const error = readApiError(response.json());
  if ((response.status === 400 || response.status === 422 || response.status === 404) && (error.param === 'model' || error.code === 'model_not_found')) {
    return new ProviderError('misconfigured', `${PROVIDER} rejected the configured model: ${sanitize(error.message ?? '')}`);
  }
  if (response.status === 400 && error.code === 'content_filter') return new ProviderError('refused', sanitize(error.message ?? 'The prompt was refused by the model\'s content filter.'));
  return failureFromStatus(PROVIDER, response, { message: error.message, param: error.param });
}
