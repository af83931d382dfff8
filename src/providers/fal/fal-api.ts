import { z } from 'zod';

/**
 * fal.ai queue wire shapes (docs/providers.md, upstream wire contracts): only the fields the adapter reads, all nullish.
 */

/** `fal-ai/bytedance/seedream/v4.5/edit` → app `fal-ai/bytedance`; `workflows/` and `comfy/` add a segment [V S-fal utils]. */
export function appIdOf(endpoint: string): string | undefined {
  const parts = endpoint.split('/');
  const take = parts[0] === 'workflows' || parts[0] === 'comfy' ? 3 : 2;
  if (parts.length < take || parts.some((part) => !/^[A-Za-z0-9._-]+$/.test(part))) return undefined;
  return parts.slice(0, take).join('/');
}

const submitSchema = z.object({
  request_id: z.string().min(1),
  status_url: z.string().nullish(),
  response_url: z.string().nullish(),
  cancel_url: z.string().nullish(),
});
export type FalSubmitResponse = z.infer<typeof submitSchema>;

export function parseSubmitResponse(json: unknown): FalSubmitResponse | undefined {
  const parsed = submitSchema.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}

/** What `resume` needs of a queued job: persisted by async jobs (src/providers/types.ts onAccepted). */
const handleSchema = z.object({
  app_id: z.string().refine((value) => appIdOf(value) === value),
  request_id: z.string().min(1),
  status_url: z.string().nullable(),
  response_url: z.string().nullable(),
  cancel_url: z.string().nullable(),
});
export type FalHandle = z.infer<typeof handleSchema>;

export function parseHandle(json: unknown): FalHandle | undefined {
  const parsed = handleSchema.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}

const statusSchema = z.object({ status: z.string() });

export function parseStatus(json: unknown): string | undefined {
  const parsed = statusSchema.safeParse(json);
  return parsed.success ? parsed.data.status : undefined;
}

const resultSchema = z.object({
  images: z.array(z.object({ url: z.string().nullish(), content_type: z.string().nullish() }).passthrough()).nullish(),
  has_nsfw_concepts: z.array(z.boolean().nullish()).nullish(),
  // Some fal models name the flag differently [V S-ai]; read either.
  nsfw_content_detected: z.union([z.array(z.boolean().nullish()), z.boolean()]).nullish(),
});

export interface FalResult {
  urls: Array<string | undefined>;
  /** Per image: the safety checker flagged it (the image is a blank placeholder or must not be served). */
  flagged: boolean[];
}

export function parseResult(json: unknown): FalResult | undefined {
  const parsed = resultSchema.safeParse(json);
  if (!parsed.success || !parsed.data.images) return undefined;
  const { images, has_nsfw_concepts: concepts, nsfw_content_detected: detected } = parsed.data;
  const flags = concepts ?? (Array.isArray(detected) ? detected : images.map(() => detected === true));
  return { urls: images.map((image) => image.url ?? undefined), flagged: images.map((_, index) => flags[index] === true) };
}

/** fal input fields → Deepshi's names, for `param` in invalid-request errors. */
const PARAM_NAMES: Record<string, string> = {
  prompt: 'prompt',
  image_size: 'image_size',
  aspect_ratio: 'aspect_ratio',
  resolution: 'resolution',
  num_images: 'n',
  seed: 'seed',
  image_urls: 'image',
};

export interface FalErrorDetail {
  message?: string;
  param?: string;
  contentPolicy: boolean;
  /** A FastAPI-style validation error on an input field. */
  validation: boolean;
}

/**
 * fal error bodies: `{"detail":[{loc,msg,type}]}` (validation and content policy, HTTP 422), `{"detail":"…"}`
 * or `{"message":"…"}` [V S-fal, V3 issues].
 */
export function errorDetail(json: unknown, extras: Record<string, unknown>): FalErrorDetail {
  const none: FalErrorDetail = { contentPolicy: false, validation: false };
  if (json === null || typeof json !== 'object') return none;
  const body = json as { detail?: unknown; message?: unknown };
  if (Array.isArray(body.detail) && body.detail.length > 0) {
    const items = body.detail.filter(
      (item): item is { loc?: unknown; msg?: unknown; type?: unknown } => item !== null && typeof item === 'object',
    );
    const policy = items.find((item) => item.type === 'content_policy_violation');
    const first = policy ?? items[0];
    if (!first) return none;
    const loc = Array.isArray(first.loc) ? first.loc.filter((part): part is string => typeof part === 'string' && part !== 'body') : [];
    const field = loc[0];
    const param = field === undefined ? undefined : (PARAM_NAMES[field] ?? (field in extras ? field : undefined));
    return {
      message: typeof first.msg === 'string' ? first.msg : undefined,
      param,
      contentPolicy: policy !== undefined,
      validation: policy === undefined && field !== undefined,
    };
  }
  if (typeof body.detail === 'string') return { ...none, message: body.detail };
  if (typeof body.message === 'string') return { ...none, message: body.message };
  return none;
}
