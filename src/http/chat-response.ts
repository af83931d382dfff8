import { usdNumber, type Nanos } from '../domain/money.ts';
import type { Warning } from '../domain/warnings.ts';
import type { ChatFinishReason, ChatToolCallDelta } from '../domain/requests.ts';
import type { ChatOutcome, ChatUsage } from '../services/chat-completion.ts';

/** OpenAI's chat completion objects, plus Deepshi's `usage.cost.total_cost` and `warnings`. */

export interface ChatFrame {
  /** `chatcmpl-…`, the same on every chunk of a stream. */
  id: string;
  created: number;
  model: string;
}

/** The chat usage object: token counts and the exact charge (docs §3: "usage.cost.total_cost"). */
export function chatUsageObject(usage: ChatUsage, cost: Nanos): Record<string, unknown> {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedTokens },
    completion_tokens_details: { reasoning_tokens: 0 },
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
    choices: [{ index: 0, message: chatMessage(outcome), logprobs: null, finish_reason: outcome.finishReason }],
    usage: chatUsageObject(outcome.usage, outcome.cost),
    ...(outcome.warnings.length > 0 ? { warnings: outcome.warnings } : {}),
  };
}

/** The assistant message: with tool calls, `tool_calls` and (OpenAI's shape) `content: null` when there is no text. */
function chatMessage(outcome: ChatOutcome): Record<string, unknown> {
  if (!outcome.toolCalls?.length) return { role: 'assistant', content: outcome.content, refusal: null };
  return { role: 'assistant', content: outcome.content === '' ? null : outcome.content, refusal: null, tool_calls: outcome.toolCalls };
}

/**
 * The `chat.completion.chunk` objects of a stream, serialised. With include_usage every chunk carries `usage: null`
 * except the last, which has empty `choices` and the usage (OpenAI's shape).
 */
export function chatChunks(frame: ChatFrame, includeUsage: boolean) {
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    JSON.stringify({ id: frame.id, object: 'chat.completion.chunk', created: frame.created, model: frame.model, choices, ...(includeUsage ? { usage: null } : {}), ...extra });
  const choice = (delta: Record<string, unknown>, finishReason: ChatFinishReason | null) => ({ index: 0, delta, logprobs: null, finish_reason: finishReason });
  return {
    role: () => chunk([choice({ role: 'assistant', content: '' }, null)]),
    content: (text: string) => chunk([choice({ content: text }, null)]),
    /** One piece of a tool call, as the adapter shaped it (OpenAI's: id, type and name first, then argument fragments). */
    toolCall: (delta: ChatToolCallDelta) => chunk([choice({ tool_calls: [delta] }, null)]),
    finish: (finishReason: ChatFinishReason, warnings: Warning[]) => chunk([choice({}, finishReason)], warnings.length > 0 ? { warnings } : {}),
    usage: (usage: ChatUsage, cost: Nanos) => chunk([], { usage: chatUsageObject(usage, cost) }),
  };
}
