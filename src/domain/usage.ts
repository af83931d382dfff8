import { usdNumber, type Nanos } from './money.ts';
/** What the upstream reports about usage; every field optional and untrusted until clamped by billing. */
export interface UpstreamUsage {
  inputTokens?: number;
  cachedInputTokens?: number;
  inputImageTokens?: number;
  outputTokens?: number;
  outputImageTokens?: number;
  reasoningTokens?: number;
  /** Cost the upstream itself reported, in nanos (BFL credits, xAI ticks...). */
  costNanos?: bigint;
  /** Images the upstream says it billed. */
  billedImages?: number;
}

const COUNTS = [
  'inputTokens',
  'cachedInputTokens',
  'inputImageTokens',
  'outputTokens',
  'outputImageTokens',
  'reasoningTokens',
  'billedImages',
] as const;

/** Adds usages field by field, each field over the usages that report it (the calls of one upstream batch). */
export function addUsage(list: Array<UpstreamUsage | undefined>): UpstreamUsage | undefined {
  const present = list.filter((usage): usage is UpstreamUsage => usage !== undefined);
  return present.length === 0 ? undefined : total(present, (values) => values.some((value) => value !== undefined));
}

/**
 * Sums the usage of a fanned-out batch for settlement. A field counts only when every call reported it: settling on a
 * partial sum would charge for some calls' tokens and nothing for the others', so then the list price applies instead.
 */
export function sumCompleteUsage(list: Array<UpstreamUsage | undefined>): UpstreamUsage | undefined {
  if (list.length === 0 || list.some((usage) => usage === undefined)) return undefined;
  return total(list as UpstreamUsage[], (values) => values.every((value) => value !== undefined));
}

function total(list: UpstreamUsage[], counts: (values: unknown[]) => boolean): UpstreamUsage {
  const sum: UpstreamUsage = {};
  for (const key of COUNTS) {
    const values = list.map((usage) => usage[key]);
    if (counts(values)) sum[key] = values.reduce<number>((acc, value) => acc + (value ?? 0), 0);
  }
  const costs = list.map((usage) => usage.costNanos);
  if (counts(costs)) sum.costNanos = costs.reduce<bigint>((acc, value) => acc + (value ?? 0n), 0n);
  return sum;
}

/**
 * The images usage object, every token count an integer (0 where the model reported none), so SDK code that sums
 * them works: OpenAI's names (input_tokens, output_tokens, total_tokens and their details, what openai-node and
 * openai-python type as integers) and the spec's (prompt_tokens, completion_tokens and details), and always the
 * billed cost.
 */
export function usageObject(usage: UpstreamUsage | undefined, cost: Nanos): Record<string, unknown> {
  const inputTokens = usage?.inputTokens ?? 0;
  const outputTokens = usage?.outputTokens ?? 0;
  const inputImageTokens = Math.min(inputTokens, usage?.inputImageTokens ?? 0);
  const outputImageTokens = Math.min(outputTokens, usage?.outputImageTokens ?? 0);
  const cachedTokens = usage?.cachedInputTokens ?? 0;
  return {
    input_tokens: inputTokens,
    input_tokens_details: { text_tokens: inputTokens - inputImageTokens, image_tokens: inputImageTokens },
    output_tokens: outputTokens,
    output_tokens_details: { text_tokens: outputTokens - outputImageTokens, image_tokens: outputImageTokens },
    total_tokens: inputTokens + outputTokens,
    prompt_tokens: inputTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens, cached_read_tokens: cachedTokens, image_tokens: usage?.inputImageTokens ?? 0 },
    completion_tokens: outputTokens,
    completion_tokens_details: { reasoning_tokens: usage?.reasoningTokens ?? 0, image_tokens: usage?.outputImageTokens ?? 0 },
    cost: { total_cost: usdNumber(cost) },
  };
}
