import type { ChatCompletionResult, ChatFinishReason, ChatMessage, NormalizedChatRequest, TextAdapter, TextCallContext } from '../types.ts';

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

  countPromptTokens(request: Pick<NormalizedChatRequest, 'messages'>): number {
    return approximatePromptTokens(request.messages);
  }

  async complete(request: NormalizedChatRequest, _route: unknown, context: TextCallContext): Promise<ChatCompletionResult> {
    const { content, finishReason } = echoAnswer(request);
    const characters = codePoints(content);
    for (let start = 0; start < characters.length; start += CHARACTERS_PER_TOKEN) {
      context.signal.throwIfAborted();
      context.onDelta?.(characters.slice(start, start + CHARACTERS_PER_TOKEN).join(''));
    }
    context.signal.throwIfAborted();
    return {
      content,
      finishReason,
      usage: { inputTokens: this.countPromptTokens(request), cachedInputTokens: 0, outputTokens: approximateTokens(content) },
      warnings: [],
    };
  }
}

/** The whole answer: the echo, ended by the first stop sequence, then cut at max output tokens. */
export function echoAnswer(request: Pick<NormalizedChatRequest, 'messages' | 'stop' | 'maxOutputTokens'>): { content: string; finishReason: ChatFinishReason } {
  const source = [...request.messages].reverse().find((message) => message.role === 'user') ?? request.messages[request.messages.length - 1];
  let answer = `Echo: ${source?.content ?? ''}`;
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
