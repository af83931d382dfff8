import { formatUsd, usdNumber, type Nanos } from '../domain/money.ts';
import type { Warning } from '../domain/warnings.ts';
import type { UpstreamUsage } from '../providers/types.ts';
import type { DeliveredImage, ImageOutcome } from '../services/image-generation.ts';

/** The spec's Usage object: token counts where the upstream reported them, and always the billed cost. */
export function usageObject(usage: UpstreamUsage | undefined, cost: Nanos): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (usage && (usage.inputTokens !== undefined || usage.outputTokens !== undefined)) {
    const promptTokens = usage.inputTokens ?? 0;
    const completionTokens = usage.outputTokens ?? 0;
    out.prompt_tokens = promptTokens;
    out.prompt_tokens_details = {
      cached_tokens: usage.cachedInputTokens ?? 0,
      cached_read_tokens: usage.cachedInputTokens ?? 0,
      image_tokens: usage.inputImageTokens ?? 0,
    };
    out.completion_tokens = completionTokens;
    out.completion_tokens_details = { reasoning_tokens: usage.reasoningTokens ?? 0, image_tokens: usage.outputImageTokens ?? 0 };
    out.total_tokens = promptTokens + completionTokens;
  }
  out.cost = { total_cost: usdNumber(cost) };
  return out;
}

/**
 * The ImageResponse body as a string. Built by concatenation so multi-megabyte base64 is copied once into
 * the body and never re-scanned by JSON.stringify (base64 and data: URIs need no escaping).
 */
export function imageResponseBody(
  outcome: ImageOutcome,
  options: { model: string; created: number; responseFormat: 'b64_json' | 'url' },
): string {
  const items = outcome.images.map((image) => imageItem(image, options.responseFormat));
  const first = outcome.images[0];
  const head = `{"created":${options.created},"model":${JSON.stringify(options.model)},"size":"${first.width}x${first.height}","data":[`;
  const tail = `],"usage":${JSON.stringify(usageObject(outcome.usage, outcome.cost))}${warningsField(outcome.warnings)}}`;
  return head + items.join(',') + tail;
}

function imageItem(image: DeliveredImage, responseFormat: 'b64_json' | 'url'): string {
  const payload = responseFormat === 'url' ? `"url":"data:${image.mediaType};base64,${image.base64}"` : `"b64_json":"${image.base64}"`;
  const revised = image.revisedPrompt !== undefined ? `,"revised_prompt":${JSON.stringify(image.revisedPrompt)}` : '';
  return `{${payload}${revised},"index":${image.index}}`;
}

function warningsField(warnings: Warning[]): string {
  return warnings.length > 0 ? `,"warnings":${JSON.stringify(warnings)}` : '';
}

/** Headers for clients that only expose headers (the Vercel AI SDK): exact cost, and which params were ignored. */
export function costHeaders(cost: Nanos, warnings: Warning[]): Record<string, string> {
  const headers: Record<string, string> = { 'x-request-cost': formatUsd(cost) };
  const params = [...new Set(warnings.map((warning) => warning.param).filter((param): param is string => Boolean(param)))];
  if (warnings.length > 0) headers['x-deepshi-warnings'] = params.length > 0 ? params.join(',') : 'other';
  return headers;
}
