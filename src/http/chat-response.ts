import { usdNumber, type Nanos } from '../domain/money.ts';
import type { Warning } from '../domain/warnings.ts';
import type { ChatFinishReason, ChatLogprobs, ChatToolCallDelta, ReasoningDetail } from '../domain/requests.ts';
import type { ChatOutcome, ChatUsage } from '../services/chat-completion.ts';

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

/** The `chat.completion` object answered to a non-streamed request. */
export function chatCompletionBody(frame: ChatFrame, outcome: ChatOutcome): Record<string, unknown> {
  return {
    id: frame.id,
    object: 'chat.completion',
    created: frame.created,
    model: frame.model,
    choices: [
      {
        index: 0,
        message: chatMessage(frame, outcome),
        logprobs: outcome.logprobs ?? null,
        finish_reason: finishReasonFor(frame, outcome.finishReason),
      },
    ],
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
function chatMessage(frame: ChatFrame, outcome: ChatOutcome): Record<string, unknown> {
  const bare = outcome.content === '' && (outcome.toolCalls?.length || outcome.refusal);
  const message: Record<string, unknown> = { role: 'assistant', content: bare ? null : outcome.content, refusal: outcome.refusal ?? null };
  if (outcome.reasoning !== undefined) message.reasoning = outcome.reasoning;
  if (outcome.reasoningDetails !== undefined) message.reasoning_details = outcome.reasoningDetails;
  if (outcome.toolCalls?.length && frame.legacyFunctions) message.function_call = outcome.toolCalls[0].function;
  else if (outcome.toolCalls?.length) message.tool_calls = outcome.toolCalls;
  return message;
}

/**
 * The `chat.completion.chunk` objects of a stream, serialised. With include_usage every chunk carries `usage: null`
 * except the last, which has empty `choices` and the usage (OpenAI's shape).
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
  const choice = (delta: Record<string, unknown>, finishReason: ChatFinishReason | null, logprobs: ChatLogprobs | null = null) => ({
    index: 0,
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
    role: () => chunk([choice({ role: 'assistant', content: '' }, null)]),
    content: (text: string, logprobs?: ChatLogprobs) => chunk([choice({ content: text }, null, logprobs ?? null)]),
    /** A piece of the reasoning trace (`delta.reasoning`, with the upstream's segments when it streams them). */
    reasoning: (text: string, details?: ReasoningDetail[]) =>
      chunk([choice({ reasoning: text, ...(details ? { reasoning_details: details } : {}) }, null)]),
    refusal: (text: string, logprobs?: ChatLogprobs) => chunk([choice({ refusal: text }, null, logprobs ?? null)]),
    /** One piece of a tool call, as the adapter shaped it (OpenAI's: id, type and name first, then argument fragments). */
    toolCall: (delta: ChatToolCallDelta) => {
      if (!frame.legacyFunctions) return chunk([choice({ tool_calls: [delta] }, null)]);
      const piece = functionCall(delta);
      return piece ? chunk([choice(piece, null)]) : undefined;
    },
    finish: (finishReason: ChatFinishReason, warnings: Warning[]) =>
      chunk([choice({}, finishReason)], warnings.length > 0 ? { warnings } : {}),
    usage: (usage: ChatUsage, cost: Nanos) => chunk([], { usage: chatUsageObject(usage, cost) }),
  };
}
