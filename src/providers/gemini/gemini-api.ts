import { z } from 'zod';
import { base64TextField } from '../shared/large-json.ts';
import { failureFromStatus, retryAfterSeconds, sanitize, type UpstreamResponse } from '../shared/http.ts';
import { ProviderError, type UpstreamUsage } from '../types.ts';

/**
 * The parts of Gemini's generateContent wire format the adapter reads (docs/providers.md, upstream wire contracts), and the
 * mapping of its answers and errors to ProviderError. Schemas name only the fields read; every leaf is
 * `.catch(undefined)`, so a field of the wrong type counts as absent instead of failing the whole answer.
 */

/** Token counts above this are not believed (a Gemini image call reports a few thousand). */
const MAX_TOKEN_COUNT = 10_000_000;
const count = z.number().int().min(0).max(MAX_TOKEN_COUNT).optional().catch(undefined);
const text = z.string().optional().catch(undefined);

const modalityCounts = z
  .array(z.object({ modality: text, tokenCount: count }).catch({ modality: undefined, tokenCount: undefined }))
  .optional()
  .catch(undefined);

const partSchema = z
  .object({
    text,
    thought: z.boolean().optional().catch(undefined),
    inlineData: z.object({ mimeType: z.string(), data: base64TextField }).optional().catch(undefined),
  })
  .catch({ text: undefined, thought: undefined, inlineData: undefined });

const candidateSchema = z
  .object({
    content: z
      .object({ parts: z.array(partSchema).optional().catch(undefined) })
      .optional()
      .catch(undefined),
    finishReason: text,
    finishMessage: text,
  })
  .catch({ content: undefined, finishReason: undefined, finishMessage: undefined });

export const generateContentResponseSchema = z.object({
  candidates: z.array(candidateSchema).optional().catch(undefined),
  promptFeedback: z.object({ blockReason: text, blockReasonMessage: text }).optional().catch(undefined),
  usageMetadata: z
    .object({
      promptTokenCount: count,
      cachedContentTokenCount: count,
      candidatesTokenCount: count,
      thoughtsTokenCount: count,
      promptTokensDetails: modalityCounts,
      candidatesTokensDetails: modalityCounts,
    })
    .optional()
    .catch(undefined),
});
export type GenerateContentResponse = z.infer<typeof generateContentResponseSchema>;

const errorSchema = z.object({
  error: z.object({
    code: z.number().optional().catch(undefined),
    message: text,
    status: text,
    details: z.array(z.record(z.string(), z.unknown()).catch({})).optional().catch(undefined),
  }),
});

/**
 * usageMetadata → UpstreamUsage. Gemini's totalTokenCount = prompt + candidates + thoughts: thinking tokens are
 * not inside candidatesTokenCount, and Google bills them as text output, so they are added to outputTokens
 * (priced at the text-output rate) and reported as reasoning tokens.
 */
export function readUsage(metadata: GenerateContentResponse['usageMetadata']): UpstreamUsage | undefined {
  if (!metadata) return undefined;
  const byModality = (list: typeof metadata.promptTokensDetails, modality: string) =>
    list?.find((entry) => entry.modality === modality)?.tokenCount;
  const usage: UpstreamUsage = {};
  if (metadata.promptTokenCount !== undefined) usage.inputTokens = metadata.promptTokenCount;
  if (metadata.cachedContentTokenCount !== undefined) usage.cachedInputTokens = metadata.cachedContentTokenCount;
  const imageIn = byModality(metadata.promptTokensDetails, 'IMAGE');
  if (imageIn !== undefined && imageIn <= (metadata.promptTokenCount ?? 0)) usage.inputImageTokens = imageIn;
  if (metadata.candidatesTokenCount !== undefined || metadata.thoughtsTokenCount !== undefined) {
    usage.outputTokens = (metadata.candidatesTokenCount ?? 0) + (metadata.thoughtsTokenCount ?? 0);
  }
  const imageOut = byModality(metadata.candidatesTokensDetails, 'IMAGE');
  // An image count larger than the candidates' total contradicts itself: it is ignored, not trusted.
  if (imageOut !== undefined && imageOut <= (metadata.candidatesTokenCount ?? 0)) usage.outputImageTokens = imageOut;
  if (metadata.thoughtsTokenCount !== undefined) usage.reasoningTokens = metadata.thoughtsTokenCount;
  return Object.keys(usage).length > 0 ? usage : undefined;
}

/**
 * finishReasons that mean the content was refused, and what was refused. Every other reason with no image
 * (NO_IMAGE, IMAGE_OTHER, OTHER, MAX_TOKENS, ...) is a plain failure: nothing says the prompt broke a rule, and a
 * content_policy_violation would send the caller rewording a prompt that may be fine. Either way nothing is charged.
 */
const REFUSALS: Record<string, string> = {
  SAFETY: 'the output was blocked by Gemini’s safety filters',
  IMAGE_SAFETY: 'the generated image was blocked by Gemini’s image safety filters',
  PROHIBITED_CONTENT: 'the output was blocked as prohibited content',
  IMAGE_PROHIBITED_CONTENT: 'the generated image was blocked as prohibited content',
  BLOCKLIST: 'the output contained a blocklisted term',
  SPII: 'the output contained sensitive personal information',
  RECITATION: 'the output was blocked for reciting existing content',
  IMAGE_RECITATION: 'the generated image was blocked for reproducing existing content',
};

export function isRefusal(finishReason: string | undefined): boolean {
  return finishReason !== undefined && Object.hasOwn(REFUSALS, finishReason);
}

export function finishFailure(finishReason: string | undefined, finishMessage: string | undefined, modelText: string): ProviderError {
  const said = finishMessage ? ` (${sanitize(finishMessage).slice(0, 200)})` : '';
  if (finishReason !== undefined && isRefusal(finishReason)) {
    return new ProviderError('refused', `Gemini refused the request: ${REFUSALS[finishReason]} [${finishReason}]${said}.`);
  }
  if (finishReason && finishReason !== 'STOP') {
    return new ProviderError('failed', `Gemini finished without an image [${finishReason}]${said}.`, { accepted: true });
  }
  const quoted = modelText ? `; it answered: “${sanitize(modelText).slice(0, 200)}”` : '';
  return new ProviderError('failed', `Gemini returned no image${quoted}.`, { accepted: true });
}

/**
 * A blocked prompt (`promptFeedback.blockReason`, HTTP 200, no candidates). Every reason is a refusal of the
 * prompt itself, OTHER included (Google uses it for terms-of-service blocks); resending it would be blocked again.
 */
export function promptBlocked(reason: string, message: string | undefined): ProviderError {
  const said = message ? `: ${sanitize(message).slice(0, 200)}` : '';
  return new ProviderError('refused', `Gemini blocked the prompt [${reason}]${said}.`);
}

/** "34.4s" (google.protobuf.Duration in JSON) → whole seconds, rounded up, 1–60. */
export function retryDelaySeconds(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const match = /^(\d{1,9})(?:\.\d+)?s$/.exec(value.trim());
  if (!match) return undefined;
  const seconds = Math.ceil(Number(value.trim().slice(0, -1)));
  return Math.min(60, Math.max(1, seconds));
}

/**
 * A non-200 answer → ProviderError. `extraKeys` are the caller's forwarded fields, so an "Unknown name" rejection
 * of one of them names it as the param.
 */
export function geminiFailure(response: UpstreamResponse, extraKeys: string[]): ProviderError {
  const parsed = errorSchema.safeParse(response.json());
  const error = parsed.success ? parsed.data.error : undefined;
  const message = error?.message ?? '';
  const details = error?.details ?? [];
  const reasons = details.map((detail) => detail.reason).filter((reason): reason is string => typeof reason === 'string');

  // An invalid key is a 400 INVALID_ARGUMENT on Gemini; billing/region problems are 400 FAILED_PRECONDITION.
  if (reasons.includes('API_KEY_INVALID') || error?.status === 'FAILED_PRECONDITION' || error?.status === 'UNAUTHENTICATED') {
    return new ProviderError(
      'misconfigured',
      `Gemini refused our credentials or project (${error?.status ?? response.status}): ${sanitize(message)}`,
    );
  }
  if (response.status === 429) {
    const retryInfo = details.find((detail) => String(detail['@type'] ?? '').endsWith('google.rpc.RetryInfo'));
    const retryAfter = retryDelaySeconds(retryInfo?.retryDelay) ?? retryAfterSeconds(response.headers);
    return new ProviderError('rate_limited', sanitize(message || 'Gemini is rate limiting this key'), { retryAfterSeconds: retryAfter });
  }
  return failureFromStatus('Gemini', response, {
    message: message || undefined,
    param: response.status === 400 ? invalidParam(message, extraKeys) : undefined,
  });
}

/** Which of OUR request fields a Gemini INVALID_ARGUMENT message is about, when it says. */
function invalidParam(message: string, extraKeys: string[]): string | undefined {
  if (/aspect.?ratio/i.test(message)) return 'aspect_ratio';
  if (/image.?size/i.test(message)) return 'resolution';
  const unknown = /Unknown name "([^"]+)"/.exec(message)?.[1];
  if (unknown && extraKeys.includes(unknown)) return unknown;
  if (/inline.?data|mime.?type/i.test(message)) return 'image';
  return undefined;
}
