import { z } from 'zod';
import { base64TextField } from '../shared/large-json.ts';
import { divCeil } from '../../domain/money.ts';
import { failureFromStatus, sanitize, type UpstreamResponse } from '../shared/http.ts';
import { ProviderError } from '../types.ts';

/**
 * The parts of xAI's image API the adapter reads (docs/providers.md, upstream wire contracts) and the mapping of its errors.
 * Leaves are `.catch(undefined)`: a field of the wrong type counts as absent instead of failing the answer.
 */
const text = z.string().optional().nullable().catch(undefined);

export const imageResponseSchema = z.object({
  data: z
    .array(
      z
        .object({
          b64_json: base64TextField.optional().nullable().catch(undefined),
          url: text,
          mime_type: text,
          revised_prompt: text,
          respect_moderation: z.boolean().optional().nullable().catch(undefined),
        })
        .catch({ b64_json: undefined, url: undefined, mime_type: undefined, revised_prompt: undefined, respect_moderation: undefined }),
    )
    .optional()
    .catch(undefined),
  usage: z.object({ cost_in_usd_ticks: z.unknown() }).optional().catch(undefined),
});
export type XaiImageResponse = z.infer<typeof imageResponseSchema>;

/** 1 tick = 1e-10 USD (xai-sdk cost.py), so 10 ticks = 1 nano-dollar. */
const TICKS_PER_NANO = 10n;
/** More than $1,000 for one image call is not believed. */
const MAX_TICKS = 10_000_000_000_000;

/**
 * `usage.cost_in_usd_ticks` → nanos for the `delivered` of `returned` images (rounded up to the nano), or undefined
 * when the value is missing, not a non-negative integer, or absurd. xAI bills every image it generated, moderated
 * ones included; the caller pays only for what is delivered, so the cost is prorated over the images returned.
 */
export function costNanos(ticks: unknown, delivered: number, returned: number): bigint | undefined {
  if (typeof ticks !== 'number' || !Number.isSafeInteger(ticks) || ticks < 0 || ticks > MAX_TICKS) return undefined;
  if (returned <= 0 || delivered <= 0 || delivered > returned) return undefined;
  return divCeil(BigInt(ticks) * BigInt(delivered), BigInt(returned) * TICKS_PER_NANO);
}

const errorSchema = z.union([
  z.object({
    error: z.object({
      message: text,
      type: text,
      param: text,
      code: z.union([z.string(), z.number()]).optional().nullable().catch(undefined),
    }),
  }),
  z.object({ code: z.union([z.string(), z.number()]).optional().catch(undefined), error: z.string() }),
]);

/** xAI's request fields → ours, for `param` on invalid-argument errors. */
const PARAM_NAMES: Record<string, string> = {
  aspect_ratio: 'aspect_ratio',
  resolution: 'resolution',
  n: 'n',
  prompt: 'prompt',
  image: 'image',
  images: 'image',
};

/**
 * A non-200 answer → ProviderError. Both of xAI's error shapes are read: `{"error":{message,type,param,code}}`
 * and `{"code":"…","error":"…"}`. `extraKeys` are the caller's forwarded fields, named as the param when rejected.
 */
export function xaiFailure(response: UpstreamResponse, extraKeys: string[]): ProviderError {
  const parsed = errorSchema.safeParse(response.json());
  const body = parsed.success ? parsed.data : undefined;
  const nested = body && typeof body.error === 'object' ? body.error : undefined;
  const message = nested ? (nested.message ?? '') : typeof body?.error === 'string' ? body.error : '';
  const code = String((nested ? nested.code : body && 'code' in body ? body.code : undefined) ?? '');
  const param = nested?.param ?? undefined;
  // Input moderation comes back as an error whose exact shape the sources do not give [R]: any error that
  // mentions moderation or the content policy is a refusal (never billed, never retried). Only 4xx: a 5xx that
  // mentions its moderation service is an outage, not a verdict on the prompt.
  const clientError = response.status >= 400 && response.status < 500 && response.status !== 429;
  if (clientError && /moderat|content.?polic|safety (system|check)/i.test(`${message} ${code}`)) {
    return new ProviderError('refused', `xAI refused the prompt: ${sanitize(message || code)}`);
  }
  if (response.status === 400 && /api key/i.test(message)) {
    return new ProviderError('misconfigured', `xAI refused our credentials (HTTP 400): ${sanitize(message)}`);
  }
  const named = param ?? /Argument not supported: ([A-Za-z0-9_.]+)/.exec(message)?.[1];
  const ours = named === undefined ? undefined : (PARAM_NAMES[named] ?? (extraKeys.includes(named) ? named : undefined));
  return failureFromStatus('xAI', response, { message: message || undefined, param: ours });
}
