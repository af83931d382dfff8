import { z } from 'zod';
import { divCeil, parseUsd } from '../../domain/money.ts';

/**
 * Black Forest Labs wire shapes (docs/providers.md, upstream wire contracts): only the fields the adapter reads, all nullish,
 * because BFL's responses vary between clusters and versions.
 */

const submitSchema = z.object({
  id: z.string().min(1),
  polling_url: z.string().nullish(),
  cost: z.number().nullish(),
  input_mp: z.number().nullish(),
  output_mp: z.number().nullish(),
});
export type BflSubmitResponse = z.infer<typeof submitSchema>;

export function parseSubmitResponse(json: unknown): BflSubmitResponse | undefined {
  const parsed = submitSchema.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}

const pollSchema = z.object({
  // Older responses carry the value under `state` [V S-ai].
  status: z.string().nullish(),
  state: z.string().nullish(),
  result: z.object({ sample: z.string().nullish() }).passthrough().nullish(),
  details: z.unknown().nullish(),
});

export interface BflPoll {
  status: string;
  sample: string | undefined;
  details: unknown;
}

export function parsePollResponse(json: unknown): BflPoll | undefined {
  const parsed = pollSchema.safeParse(json);
  if (!parsed.success) return undefined;
  const status = parsed.data.status ?? parsed.data.state;
  if (!status) return undefined;
  return { status, sample: parsed.data.result?.sample ?? undefined, details: parsed.data.details };
}

/** BFL's statuses that mean "keep polling". `Reasoning`/`Generating` are seen by some clients [V S-ai]. */
export const RUNNING_STATUSES = new Set(['Pending', 'Queued', 'Processing', 'Reasoning', 'Generating']);

/** BFL request fields → Deepshi's names, for `param` in invalid-request errors. */
const PARAM_NAMES: Record<string, string> = {
  prompt: 'prompt',
  width: 'width',
  height: 'height',
  seed: 'seed',
  safety_tolerance: 'safety_tolerance',
  output_format: 'output_format',
};

/**
 * The message and (our) param of a BFL error body: FastAPI `{"detail":[{loc,msg,type}]}`, `{"detail":"…"}`,
 * or `{"message":"…"}` [V S-bfl, S-ai]. Forwarded extras keep their own name as param.
 */
export function errorDetail(json: unknown, extras: Record<string, unknown>): { message?: string; param?: string } {
  if (json === null || typeof json !== 'object') return {};
  const body = json as { detail?: unknown; message?: unknown };
  if (Array.isArray(body.detail) && body.detail.length > 0) {
    const first = body.detail[0] as { loc?: unknown; msg?: unknown };
    const loc = Array.isArray(first.loc) ? first.loc.filter((part): part is string => typeof part === 'string' && part !== 'body') : [];
    const field = loc[0];
    const param =
      field === undefined
        ? undefined
        : (PARAM_NAMES[field] ?? (/^input_image(_\d)?$/.test(field) ? 'image' : field in extras ? field : undefined));
    const message = typeof first.msg === 'string' ? `${field ? `${field}: ` : ''}${first.msg}` : undefined;
    return { message, param };
  }
  if (typeof body.detail === 'string') return { message: body.detail };
  if (typeof body.message === 'string') return { message: body.message };
  return {};
}

/** A job's cost never exceeds this many credits ($100); anything above is a reporting error, ignored. */
const MAX_CREDITS = 10_000;

/**
 * BFL's `cost` (credits, 1 credit = $0.01 = 10,000,000 nanos) as nanos, exact for any decimal BFL sends and
 * rounded up past the nano. Negative, non-finite or implausibly large values are ignored (list price applies).
 */
export function creditsToNanos(credits: number | null | undefined): bigint | undefined {
  if (typeof credits !== 'number' || !Number.isFinite(credits) || credits < 0 || credits > MAX_CREDITS) return undefined;
  // parseUsd reads the number's shortest decimal form exactly, in billionths; ÷ 100 turns credits into dollars.
  const billionthsOfCredits = parseUsd(Number(credits.toFixed(9)));
  return divCeil(billionthsOfCredits, 100n);
}
