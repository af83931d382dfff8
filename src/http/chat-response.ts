import { usdNumber, type Nanos } from '../domain/money.ts';
import type { Warning } from '../domain/warnings.ts';
import type { ChatFinishReason, ChatLogprobs, ChatToolCallDelta, ReasoningDetail } from '../domain/requests.ts';
import type { ChatChoiceOutcome, ChatOutcome, ChatUsage } from '../services/chat-completion.ts';

/** OpenAI's chat completion objects, plus Deepshi's `usage.cost.total_cost` and `warnings`. */

export interface ChatFrame {
  /** `chatcmpl-…`, the same on every chunk of a stream. */
  id: string;
  created: number;
  model: string;
  /** The caller sent legacy `functions`: answer a call as `function_call` (finish "function_call"), not `tool_calls`. */
  legacyFunctions?: boolean;
}

/** The finish reason in the shape the caller used. */
function finishReasonFor(frame: ChatFrame, finishReason: ChatFinishReason): string {
  return frame.legacyFunctions && finishReason === 'tool_calls' ? 'function_call' : finishReason;
}

/** The chat usage object: token counts and the exact charge (`usage.cost.total_cost`, spec/deepshi-extensions.yaml). */
export function chatUsageObject(usage: ChatUsage, cost: Nanos): Record<string, unknown> {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedTokens },
    completion_tokens_details: { reasoning_tokens: usage.reasoningTokens },
    cost: { total_cost: usdNumber(cost) },
  };
}

/** The `chat.completion` object answered to a non-streamed request: every choice under its index. */
export function chatCompletionBody(frame: ChatFrame, outcome: ChatOutcome): Record<string, unknown> {
  return {
    id: frame.id,
    object: 'chat.completion',
    created: frame.created,
    model: frame.model,
    choices: outcome.choices.map((choice, index) => ({
      index,
      message: chatMessage(frame, choice),
      logprobs: choice.logprobs ?? null,
      finish_reason: finishReasonFor(frame, choice.finishReason),
    })),
    usage: chatUsageObject(outcome.usage, outcome.cost),
    ...(outcome.warnings.length > 0 ? { warnings: outcome.warnings } : {}),
  };
}

/**
 * The assistant message: with tool calls, `tool_calls` and (OpenAI's shape) `content: null` when there is no text; a
 * refusal as the model gave it (content null when that is all it said); the reasoning trace as `reasoning` and
 * `reasoning_details` (providers/openai-compatible/reasoning.ts), whatever the upstream called it. A legacy `functions` caller gets its one call as
 * `function_call: {name, arguments}`.
 */
function chatMessage(frame: ChatFrame, choice: ChatChoiceOutcome): Record<string, unknown> {
  const bare = choice.content === '' && (choice.toolCalls?.length || choice.refusal);
  const message: Record<string, unknown> = { role: 'assistant', content: bare ? null : choice.content, refusal: choice.refusal ?? null };
  if (choice.reasoning !== undefined) message.reasoning = choice.reasoning;
  if (choice.reasoningDetails !== undefined) message.reasoning_details = choice.reasoningDetails;
  if (choice.toolCalls?.length && frame.legacyFunctions) message.function_call = choice.toolCalls[0].function;
  else if (choice.toolCalls?.length) message.tool_calls = choice.toolCalls;
  return message;
}

/**
 * The `chat.completion.chunk` objects of a stream, serialised; each piece names its choice's `index` (several with
 * `n` > 1, interleaved as the model produces them). With include_usage every chunk carries `usage: null` except the
 * last, which has empty `choices` and the usage (OpenAI's shape).
 */
export function chatChunks(frame: ChatFrame, includeUsage: boolean) {
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      id: frame.id,
      object: 'chat.completion.chunk',
      created: frame.created,
      model: frame.model,
      choices,
      ...(includeUsage ? { usage: null } : {}),
      ...extra,
    });
  const choice = (
    index: number,
    delta: Record<string, unknown>,
    finishReason: ChatFinishReason | null,
    logprobs: ChatLogprobs | null = null,
  ) => ({
    index,
    delta,
    logprobs,
    finish_reason: finishReason === null ? null : finishReasonFor(frame, finishReason),
  });
  /** A tool call piece as a legacy `delta.function_call` piece (the first call only: functions were answered one at a time). */
  const functionCall = (delta: ChatToolCallDelta) => {
    if (delta.index !== 0) return undefined;
    const piece: Record<string, unknown> = {};
    if (delta.function?.name !== undefined) piece.name = delta.function.name;
    if (delta.function?.arguments !== undefined) piece.arguments = delta.function.arguments;
    return { function_call: piece };
  };
  return {
    role: (index: number) => chunk([choice(index, { role: 'assistant', content: '' }, null)]),
    content: (index: number, text: string, logprobs?: ChatLogprobs) => chunk([choice(index, { content: text }, null, logprobs ?? null)]),
    /** A piece of the reasoning trace (`delta.reasoning`, with the upstream's segments when it streams them). */
    reasoning: (index: number, text: string, details?: ReasoningDetail[]) =>
      chunk([choice(index, { reasoning: text, ...(details ? { reasoning_details: details } : {}) }, null)]),
    refusal: (index: number, text: string, logprobs?: ChatLogprobs) => chunk([choice(index, { refusal: text }, null, logprobs ?? null)]),
    /** One piece of a tool call, as the adapter shaped it (OpenAI's: id, type and name first, then argument fragments). */
    toolCall: (index: number, delta: ChatToolCallDelta) => {
      if (!frame.legacyFunctions) return chunk([choice(index, { tool_calls: [delta] }, null)]);
      const piece = functionCall(delta);
      return piece ? chunk([choice(index, piece, null)]) : undefined;
    },
    /** A choice's last chunk: empty delta and its finish reason (the warnings ride on the last choice's). */
    finish: (index: number, finishReason: ChatFinishReason, warnings: Warning[]) =>
      chunk([choice(index, {}, finishReason)], warnings.length > 0 ? { warnings } : {}),
    usage: (usage: ChatUsage, cost: Nanos) => chunk([], { usage: chatUsageObject(usage, cost) }),
  };
}
