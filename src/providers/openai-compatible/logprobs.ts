import { z } from 'zod';
import type { ChatLogprobs, TokenLogprob } from '../types.ts';

/**
 * Token log-probabilities in OpenAI's shape (`choices[].logprobs: {content, refusal}`), read from a completion or from
 * each chunk of a stream (vLLM and OpenAI send the same shape). Validated at the edge: a malformed entry is dropped
 * rather than passed on; a `logprobs` that is not the shape at all counts as absent.
 */

const alternative = z.object({
  token: z.string(),
  logprob: z.number(),
  bytes: z.array(z.number().int().min(0).max(255)).nullish(),
});
const tokenLogprob = alternative.extend({ top_logprobs: z.array(alternative).nullish() });
const logprobsSchema = z.object({ content: z.array(z.unknown()).nullish(), refusal: z.array(z.unknown()).nullish() });

function readTokens(raw: unknown[] | null | undefined): TokenLogprob[] | null {
  if (!raw) return null;
  const tokens: TokenLogprob[] = [];
  for (const item of raw) {
    const parsed = tokenLogprob.safeParse(item);
    if (!parsed.success) continue;
    const { token, logprob, bytes, top_logprobs: top } = parsed.data;
    tokens.push({
      token,
      logprob,
      bytes: bytes ?? null,
      top_logprobs: (top ?? []).map((entry) => ({ token: entry.token, logprob: entry.logprob, bytes: entry.bytes ?? null })),
    });
  }
  return tokens;
}

export function readLogprobs(raw: unknown): ChatLogprobs | undefined {
  const parsed = logprobsSchema.safeParse(raw);
  if (!parsed.success || (!parsed.data.content && !parsed.data.refusal)) return undefined;
  return { content: readTokens(parsed.data.content), refusal: readTokens(parsed.data.refusal) };
}

/** The logprobs of a whole streamed answer: each chunk's entries, in order. */
export class LogprobsAccumulator {
  private content: TokenLogprob[] | null = null;
  private refusal: TokenLogprob[] | null = null;

  push(piece: ChatLogprobs): void {
    if (piece.content) this.content = [...(this.content ?? []), ...piece.content];
    if (piece.refusal) this.refusal = [...(this.refusal ?? []), ...piece.refusal];
  }

  finish(): ChatLogprobs | undefined {
    return this.content || this.refusal ? { content: this.content, refusal: this.refusal } : undefined;
  }
}
