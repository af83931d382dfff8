import type {
  ChatChoiceResult,
  ChatCompletionResult,
  ChatFinishReason,
  ChatMessage,
  ChatToolCall,
  NormalizedChatRequest,
  TextAdapter,
  TextCallContext,
} from '../types.ts';
import { planEcho } from './echo-plan.ts';

/**
 * `deepshi-echo`: the built-in development text model. It is not a language model: it answers "Echo: " followed by
 * the last user message (or, without one, the last message), so a fresh clone can exercise chat completions, streaming
 * and billing end to end with no provider keys. Deterministic: the same request always gives the same answer; seed and
 * temperature change nothing.
 *
 * It honours `max_tokens` (the answer is cut at that many tokens, finish_reason "length") and `stop` (the answer ends
 * before the first stop sequence, which is left out, finish_reason "stop").
 *
 * Tokens are an approximation, documented and used the same way for prompt and completion (docs/chat.md):
 * a text is ceil(characters / 4) tokens (characters = Unicode code points), and each prompt message adds 4 tokens of
 * framing. A completion of N tokens is therefore at most 4·N characters, streamed one token (4 characters) per chunk.
 */
export const CHARACTERS_PER_TOKEN = 4;
export const TOKENS_PER_MESSAGE = 4;

export function approximateTokens(text: string): number {
  return Math.ceil(codePoints(text).length / CHARACTERS_PER_TOKEN);
}

/** Prompt tokens of a conversation under the approximation above. */
export function approximatePromptTokens(messages: ChatMessage[]): number {
  let total = 0;
  for (const message of messages) {
    total += TOKENS_PER_MESSAGE + approximateTokens(message.content);
    if (message.toolCalls?.length) total += approximateTokens(JSON.stringify(message.toolCalls));
  }
  return total;
}

export class OfflineEchoAdapter implements TextAdapter {
  readonly provider = 'offline';
  readonly modality = 'text';

  isConfigured(): boolean {
    return true;
  }

  /** The messages, plus the forwarded features the model reads as prompt (tools, tool_choice, a response schema) as JSON. */
  countPromptTokens(request: Pick<NormalizedChatRequest, 'messages'> & Partial<Pick<NormalizedChatRequest, 'extra'>>): number {
    let total = approximatePromptTokens(request.messages);
    for (const name of PROMPT_FEATURES) {
      const value = request.extra?.[name];
      if (value !== undefined) total += approximateTokens(JSON.stringify(value));
    }
    return total;
  }

  /**
   * Every choice (request.n) planned and cut; streamed one token per piece, the choices' pieces interleaved (first
   * piece of each choice, then the second of each…) as OpenAI interleaves them. Usage: the prompt once, the completion
   * tokens of every choice.
   */
  async complete(request: NormalizedChatRequest, _route: unknown, context: TextCallContext): Promise<ChatCompletionResult> {
    context.signal.throwIfAborted();
    const choices: ChatChoiceResult[] = [];
    const streams: Array<Array<() => void>> = [];
    let outputTokens = 0;
    for (let index = 0; index < (request.n ?? 1); index++) {
      const { choice, tokens, pieces } = echoChoice(request, index, context);
      choices.push(choice);
      streams.push(pieces);
      outputTokens += tokens;
    }
    for (let round = 0; round < Math.max(...streams.map((pieces) => pieces.length)); round++) {
      for (const pieces of streams) {
        if (round >= pieces.length) continue;
        context.signal.throwIfAborted();
        pieces[round]();
      }
    }
    context.signal.throwIfAborted();
    return { choices, usage: { inputTokens: this.countPromptTokens(request), cachedInputTokens: 0, outputTokens }, warnings: [] };
  }
}

/** One choice: its answer, its completion tokens and its streamed pieces (calls of the context's hooks, in order). */
function echoChoice(
  request: NormalizedChatRequest,
  index: number,
  context: TextCallContext,
): { choice: ChatChoiceResult; tokens: number; pieces: Array<() => void> } {
  const plan = planEcho(request, index);
  if (plan.kind === 'tools') {
    const { calls, finishReason, tokens } = cutToolCalls(plan.calls, request.maxOutputTokens);
    const pieces: Array<() => void> = [];
    calls.forEach((call, callIndex) => {
      pieces.push(() =>
        context.onToolCallDelta?.(index, {
          index: callIndex,
          id: call.id,
          type: 'function',
          function: { name: call.function.name, arguments: '' },
        }),
      );
      for (const piece of tokenPieces(call.function.arguments))
        pieces.push(() => context.onToolCallDelta?.(index, { index: callIndex, function: { arguments: piece } }));
    });
    return { choice: { content: '', finishReason, toolCalls: calls }, tokens, pieces };
  }
  const { content, finishReason } = cutAnswer(plan.content, request);
  const pieces = tokenPieces(content).map((piece) => () => context.onDelta?.(index, piece));
  return { choice: { content, finishReason }, tokens: approximateTokens(content), pieces };
}

/** Forwarded features that count as prompt. */
const PROMPT_FEATURES = ['tools', 'tool_choice', 'response_format'] as const;

/** A text in pieces of one token (4 characters), as streamed. */
function tokenPieces(text: string): string[] {
  const characters = codePoints(text);
  const pieces: string[] = [];
  for (let start = 0; start < characters.length; start += CHARACTERS_PER_TOKEN)
    pieces.push(characters.slice(start, start + CHARACTERS_PER_TOKEN).join(''));
  return pieces;
}

/**
 * Tool calls within the completion budget: each call costs its name's and its arguments' tokens; past the budget the
 * arguments are cut (and later calls dropped), finish "length", as a real model's would be.
 */
function cutToolCalls(
  calls: ChatToolCall[],
  maxOutputTokens: number,
): { calls: ChatToolCall[]; finishReason: ChatFinishReason; tokens: number } {
  const out: ChatToolCall[] = [];
  let tokens = 0;
  for (const call of calls) {
    const cost = approximateTokens(call.function.name) + approximateTokens(call.function.arguments);
    if (tokens + cost <= maxOutputTokens) {
      out.push(call);
      tokens += cost;
      continue;
    }
    const room = maxOutputTokens - tokens - approximateTokens(call.function.name);
    if (room > 0) {
      out.push({
        ...call,
        function: {
          name: call.function.name,
          arguments: codePoints(call.function.arguments)
            .slice(0, room * CHARACTERS_PER_TOKEN)
            .join(''),
        },
      });
      tokens += approximateTokens(call.function.name) + room;
    }
    return { calls: out, finishReason: 'length', tokens };
  }
  return { calls: out, finishReason: 'tool_calls', tokens };
}

/** The whole text answer (echo-plan.ts), ended by the first stop sequence, then cut at max output tokens. */
export function echoAnswer(
  request: Pick<NormalizedChatRequest, 'messages' | 'stop' | 'maxOutputTokens'> &
    Partial<Pick<NormalizedChatRequest, 'extra' | 'sampling'>>,
): { content: string; finishReason: ChatFinishReason } {
  const plan = planEcho({ messages: request.messages, extra: request.extra ?? {}, sampling: request.sampling ?? {} });
  return cutAnswer(plan.kind === 'text' ? plan.content : '', request);
}

function cutAnswer(
  text: string,
  request: Pick<NormalizedChatRequest, 'stop' | 'maxOutputTokens'>,
): { content: string; finishReason: ChatFinishReason } {
  let answer = text;
  let firstStop = -1;
  for (const sequence of request.stop) {
    const at = answer.indexOf(sequence);
    if (at >= 0 && (firstStop < 0 || at < firstStop)) firstStop = at;
  }
  if (firstStop >= 0) answer = answer.slice(0, firstStop);
  const characters = codePoints(answer);
  const limit = request.maxOutputTokens * CHARACTERS_PER_TOKEN;
  if (characters.length > limit) return { content: characters.slice(0, limit).join(''), finishReason: 'length' };
  return { content: answer, finishReason: 'stop' };
}

function codePoints(text: string): string[] {
  return Array.from(text);
}
