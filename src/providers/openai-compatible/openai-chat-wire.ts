import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { sanitize, type UpstreamResponse } from '../shared/http.ts';
import { readApiError, SseDecoder } from '../shared/openai-images-wire.ts';
import {
  ProviderError,
  type ChatFinishReason,
  type ChatLogprobs,
  type ChatToolCall,
  type ChatToolCallDelta,
  type ReasoningDetail,
} from '../types.ts';
import { readLogprobs, LogprobsAccumulator } from './logprobs.ts';
import { ReasoningAccumulator, readReasoning, type ReadReasoning } from './reasoning.ts';

/**
 * The answer side of OpenAI's chat completions wire format, as OpenAICompatibleChatAdapter reads it: a completion
 * (JSON) or a stream of chunks (SSE), validated leniently (zod), tool calls included. Nothing here sends anything.
 */

/** How errors and messages name the upstream. */
export const UPSTREAM_CHAT_SERVER = 'the upstream chat server';
const PROVIDER = UPSTREAM_CHAT_SERVER;

/** What the upstream answered, before the usage rule is applied: its choices (index order) and its usage. */
export interface UpstreamAnswer {
  choices: UpstreamChoice[];
  usage: ReportedUsage;
}

/** One choice of the upstream's answer. */
export interface UpstreamChoice {
  content: string;
  finishReason: ChatFinishReason;
  toolCalls?: ChatToolCall[];
  refusal?: string;
  /** The reasoning trace, whatever the upstream called it (reasoning.ts). */
  reasoning?: ReadReasoning;
  logprobs?: ChatLogprobs;
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

/** A choice's `index`: lenient (a server may leave it out; then its position counts). */
const choiceIndex = z.number().int().min(0).max(1e6).nullish();

const completionSchema = z.object({
  choices: z
    .array(
      z.object({
        index: choiceIndex,
        message: z
          .object({
            content: z.string().nullish(),
            refusal: z.string().nullish(),
            tool_calls: z.array(toolCallSchema).nullish(),
            reasoning: z.unknown().optional(),
            reasoning_content: z.unknown().optional(),
            reasoning_details: z.unknown().optional(),
          })
          .nullish(),
        finish_reason: z.string().nullish(),
        logprobs: z.unknown().optional(),
      }),
    )
    .min(1),
  usage: z.unknown().optional(),
});

/**
 * A completion's choices, in the order of their `index` (position when a server omits it), renumbered 0, 1, … and at
 * most `wanted` of them (the `n` asked for).
 */
export function readChatCompletion(response: UpstreamResponse, wanted: number): UpstreamAnswer {
  const json = response.json();
  const parsed = completionSchema.safeParse(json);
  if (!parsed.success) throw new ProviderError('failed', `${PROVIDER} sent a response that is not a chat completion`, { accepted: true });
  const ordered = parsed.data.choices
    .map((choice, position) => ({ choice, at: choice.index ?? position }))
    .sort((a, b) => a.at - b.at)
    .slice(0, wanted);
  return { choices: ordered.map(({ choice }) => readChoice(choice)), usage: readChatUsage(parsed.data.usage) };
}

function readChoice(choice: z.infer<typeof completionSchema>['choices'][number]): UpstreamChoice {
  const answer: UpstreamChoice = { content: choice.message?.content ?? '', finishReason: mapFinishReason(choice.finish_reason) };
  if (choice.message?.refusal) answer.refusal = choice.message.refusal;
  const reasoning = readReasoning(choice.message);
  if (reasoning.text !== '' || reasoning.details) answer.reasoning = reasoning;
  const logprobs = readLogprobs(choice.logprobs);
  if (logprobs) answer.logprobs = logprobs;
  const toolCalls = choice.message?.tool_calls ?? [];
  if (toolCalls.length > 0) {
    answer.toolCalls = toolCalls.map((call) => ({
      id: call.id,
      type: 'function',
      function: { name: call.function.name, arguments: call.function.arguments ?? '' },
    }));
  }
  return answer;
}

const chunkSchema = z.object({
  choices: z
    .array(
      z.object({
        index: choiceIndex,
        delta: z
          .object({
            content: z.string().nullish(),
            refusal: z.string().nullish(),
            tool_calls: z.array(toolCallDeltaSchema).nullish(),
            reasoning: z.unknown().optional(),
            reasoning_content: z.unknown().optional(),
            reasoning_details: z.unknown().optional(),
          })
          .nullish(),
        finish_reason: z.string().nullish(),
        logprobs: z.unknown().optional(),
      }),
    )
    .nullish(),
  usage: z.unknown().optional(),
});

/** Where a stream's pieces go as they arrive (TextCallContext's hooks, each with the choice's index first). */
export interface StreamHooks {
  onDelta: (choice: number, text: string, logprobs?: ChatLogprobs) => void;
  onToolCallDelta?: (choice: number, delta: ChatToolCallDelta) => void;
  onReasoningDelta?: (choice: number, text: string, details?: ReasoningDetail[]) => void;
  onRefusalDelta?: (choice: number, text: string, logprobs?: ChatLogprobs) => void;
}

type ChunkChoice = NonNullable<z.infer<typeof chunkSchema>['choices']>[number];

/**
 * Reads the upstream's SSE stream as it arrives: `data: {chat.completion.chunk}` events, each choice's `delta.content`
 * passed on at once, each choice's finish reason, the usage chunk (asked for with include_usage), then `data: [DONE]`.
 * With `n` > 1 the chunks of the choices interleave, each naming its `index`; choices are numbered 0, 1, … in the
 * order they first appear (OpenAI's and vLLM's own order), and any beyond the `wanted` ones are dropped. An error event
 * or a chunk that is not JSON ends the call as failed; the upstream had accepted the work.
 */
export class ChatStreamReader {
  private usage: ReportedUsage = {};
  private done = false;
  /** Our choice index by the upstream's. */
  private readonly indices = new Map<number, number>();
  private readonly choices: StreamedChoice[] = [];
  private readonly decoder = new SseDecoder((event) => this.event(event.data));

  constructor(
    private readonly hooks: StreamHooks,
    private readonly wanted: number,
  ) {}

  push(chunk: Buffer): void {
    this.decoder.push(chunk);
  }

  finish(): UpstreamAnswer {
    this.decoder.end();
    if (!this.done && (this.choices.length === 0 || this.choices.some((choice) => choice.finishReason === undefined))) {
      throw new ProviderError('failed', `${PROVIDER} ended the stream before the answer was complete`, { accepted: true });
    }
    const choices = this.choices.length > 0 ? this.choices : [new StreamedChoice(0, this.hooks)];
    return { choices: choices.map((choice) => choice.finish()), usage: this.usage };
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
      throw new ProviderError('failed', sanitize(`${PROVIDER} failed mid-stream${error.message ? `: ${error.message}` : ''}`), {
        accepted: true,
      });
    }
    const parsed = chunkSchema.safeParse(json);
    if (!parsed.success)
      throw new ProviderError('failed', `${PROVIDER} sent a stream chunk that is not a chat.completion.chunk`, { accepted: true });
    if (parsed.data.usage !== undefined && parsed.data.usage !== null) this.usage = readChatUsage(parsed.data.usage);
    for (const [position, choice] of (parsed.data.choices ?? []).entries()) this.choiceFor(choice.index ?? position)?.push(choice);
  }

  /** The state of the upstream's choice `upstreamIndex`, started on its first piece; undefined past the wanted choices. */
  private choiceFor(upstreamIndex: number): StreamedChoice | undefined {
    let index = this.indices.get(upstreamIndex);
    if (index === undefined) {
      if (this.choices.length >= this.wanted) return undefined;
      index = this.choices.length;
      this.indices.set(upstreamIndex, index);
      this.choices.push(new StreamedChoice(index, this.hooks));
    }
    return this.choices[index];
  }
}

/** One choice of a stream: its pieces passed on under its index as they come, and accumulated. */
class StreamedChoice {
  finishReason: ChatFinishReason | undefined;
  private content = '';
  private refusal = '';
  private readonly toolCalls = new ToolCallAccumulator();
  private readonly reasoning: ReasoningAccumulator;
  private readonly logprobs = new LogprobsAccumulator();

  constructor(
    private readonly index: number,
    private readonly hooks: StreamHooks,
  ) {
    const onReasoning = hooks.onReasoningDelta;
    this.reasoning = new ReasoningAccumulator(onReasoning ? (text, details) => onReasoning(index, text, details) : undefined);
  }

  push(choice: ChunkChoice): void {
    const { index, hooks } = this;
    this.reasoning.push(choice.delta);
    const logprobs = readLogprobs(choice.logprobs);
    if (logprobs) this.logprobs.push(logprobs);
    const text = choice.delta?.content;
    if (text) {
      this.content += text;
      hooks.onDelta(index, text, logprobs);
    } else if (logprobs && !choice.delta?.refusal) {
      hooks.onDelta(index, '', logprobs);
    }
    if (choice.delta?.refusal) {
      this.refusal += choice.delta.refusal;
      hooks.onRefusalDelta?.(index, choice.delta.refusal, logprobs);
    }
    for (const piece of choice.delta?.tool_calls ?? []) {
      for (const delta of this.toolCalls.push(piece)) hooks.onToolCallDelta?.(index, delta);
    }
    if (choice.finish_reason) this.finishReason = mapFinishReason(choice.finish_reason);
  }

  finish(): UpstreamChoice {
    const answer: UpstreamChoice = { content: this.content, finishReason: this.finishReason ?? 'stop' };
    if (this.refusal) answer.refusal = this.refusal;
    const reasoning = this.reasoning.finish();
    if (reasoning.text !== '' || reasoning.details) answer.reasoning = reasoning;
    const logprobs = this.logprobs.finish();
    if (logprobs) answer.logprobs = logprobs;
    const toolCalls = this.toolCalls.finish();
    if (toolCalls.length > 0) answer.toolCalls = toolCalls;
    return answer;
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
    let index =
      upstreamIndex !== undefined ? this.calls.findIndex((entry) => entry.upstreamIndex === upstreamIndex) : this.calls.length - 1;
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
