import { z } from 'zod';

/**
 * The catalog file format. Models, their parameters, sizes, limits, prices and upstream routes are data:
 * an operator edits or replaces the file (DEEPSHI_CATALOG) and nothing in the code names a model.
 * Prices are USD decimal strings so they are exact; they are parsed into nanos once, at load.
 */

const usd = z.string().regex(/^\d{1,12}(\.\d{1,9})?$/, 'a USD amount as a decimal string, e.g. "0.04"');

const integerParam = z.object({
  type: z.literal('integer'),
  min: z.number().int(),
  max: z.number().int(),
  multiple_of: z.number().int().positive().optional(),
  default: z.number().int().optional(),
  description: z.string().optional(),
});
const stringParam = z.object({
  type: z.literal('string'),
  enum: z.array(z.string()).min(1),
  /** Also accept any "WxH" string passing `custom_size` (preset-size models with free sizes, e.g. gpt-image-2). */
  allow_custom_size: z.boolean().optional(),
  default: z.string().optional(),
  description: z.string().optional(),
});
const booleanParam = z.object({
  type: z.literal('boolean'),
  default: z.boolean().optional(),
  description: z.string().optional(),
});
export const paramSpecSchema = z.discriminatedUnion('type', [integerParam, stringParam, booleanParam]);

const customSizeSchema = z.object({
  min_side: z.number().int().positive(),
  max_side: z.number().int().positive(),
  multiple_of: z.number().int().positive().default(1),
  min_pixels: z.number().int().positive().optional(),
  max_pixels: z.number().int().positive().optional(),
  /** Longest side over shortest side. */
  max_aspect_ratio: z.number().positive().optional(),
});

/**
 * How the output pixel size follows from the parameters.
 * - `pixel_dimensions`: width × height as asked (defaults from the params).
 * - `resolution_tier`: table[resolution][aspect_ratio].
 * - `aspect_ratio`: table["*"][aspect_ratio] (one tier).
 * - `preset_size`: table["*"][image_size], or a custom "WxH" when the param allows it.
 * The table is also what /v1/models publishes, so callers see exact sizes before calling.
 */
export const sizingSchema = z.object({
  style: z.enum(['pixel_dimensions', 'resolution_tier', 'aspect_ratio', 'preset_size']),
  table: z.record(z.string(), z.record(z.string(), z.string().regex(/^\d+x\d+$/))).optional(),
  custom_size: customSizeSchema.optional(),
  /** For models that accept both width/height and aspect_ratio+resolution (the offline model). */
  also_resolution_tier: z.boolean().optional(),
});

/**
 * Price rules. Every rule yields nanos; the hold is the rule applied to the worst case the request allows.
 * - per_image: `base` per output image, overridden by `table` keyed by the values of `by` joined with "/"
 *   (most specific key first, then shorter prefixes), plus `input_image` per reference image on edits and
 *   `prompt_per_million_bytes` × the prompt's UTF-8 bytes (once per request, rounded up to the nano-dollar). A custom
 *   "WxH" size (sizing.custom_size) is not a table key: with `custom_size_megapixel` it costs that price (looked up
 *   by the `by` values before the size) per started output megapixel.
 * - per_megapixel: BFL style: `first` for the first output megapixel, `additional` per further started
 *   megapixel (1 MP = 1024×1024 px, rounded up per image), `input` per started input megapixel.
 * - per_token: USD per 1M tokens (input, cached input, output; image output for image models). Image models hold
 *   `image_estimate_tokens` per image; text models hold the prompt's tokens plus the most output tokens the request
 *   allows, and settle the tokens actually used.
 */
/**
 * The upstream's own token rates (USD per 1M tokens). With `settle: upstream_tokens` the charge is the usage the
 * upstream reports at these rates; with any settle they price that usage as the upstream's cost, which is recorded
 * next to the charge (the ledger's `upstream_cost`) so the operator sees the margin.
 */
const tokenRates = z.object({
  input_per_million: usd,
  cached_input_per_million: usd.optional(),
  image_input_per_million: usd.optional(),
  output_per_million: usd,
  image_output_per_million: usd.optional(),
});

/**
 * How the settled charge is computed once images are delivered (the hold always comes from the list price):
 * - list: list price × delivered images (+ inputs). The default: the quote is then the exact charge.
 * - upstream_tokens: the upstream's reported token usage × `tokens` rates (OpenAI, Gemini); list price if none.
 * - upstream_cost: the cost the upstream reports (BFL credits, xAI ticks) × (1 + markup_percent/100); list price if none.
 * Whatever the upstream reports, the charge is clamped to [0, hold].
 */
const settleRule = z.enum(['list', 'upstream_tokens', 'upstream_cost']).default('list');

const perImagePricing = z.object({
  unit: z.literal('image'),
  base: usd,
  by: z.array(z.string()).optional(),
  table: z.record(z.string(), usd).optional(),
  input_image: usd.optional(),
  prompt_per_million_bytes: usd.optional(),
  custom_size_megapixel: z.record(z.string(), usd).optional(),
  settle: settleRule,
  tokens: tokenRates.optional(),
  markup_percent: z.number().min(0).max(1000).default(0),
});
const perMegapixelPricing = z.object({
  unit: z.literal('megapixel'),
  first: usd,
  additional: usd,
  input: usd.optional(),
  settle: settleRule,
  markup_percent: z.number().min(0).max(1000).default(0),
});
const perTokenPricing = z.object({
  unit: z.literal('token'),
  input_per_million: usd,
  cached_input_per_million: usd.optional(),
  output_per_million: usd,
  image_output_per_million: usd.optional(),
  /** Output tokens assumed per image when holding credit before the upstream reports usage. */
  image_estimate_tokens: z.number().int().positive().optional(),
  /** Output tokens assumed when the request sets no max_tokens. */
  max_output_tokens: z.number().int().positive().optional(),
});
export const pricingSchema = z.discriminatedUnion('unit', [perImagePricing, perMegapixelPricing, perTokenPricing]);

export const routeSchema = z.object({
  /** Adapter id, e.g. `offline`, `openai`, `gemini`, `bfl`, `fal`, `ark`, `xai`, `openai-compatible`. */
  provider: z.string().min(1),
  /** The model id the upstream knows (e.g. `gemini-3-pro-image-preview`). */
  upstream_model: z.string().optional(),
  /** Environment variable holding this route's credential; unset = route unavailable. */
  credentials_env: z.string().optional(),
  /** Environment variable or literal base URL for the upstream. */
  base_url_env: z.string().optional(),
  base_url: z.string().url().optional(),
  /** Adapter-specific route options (fal endpoint ids, timeouts, ...). */
  options: z.record(z.string(), z.unknown()).optional(),
  /**
   * Upstream calls this route may have open at once on one instance (each holds one connection at a time); a request
   * that finds every route of its model full is answered 429 with Retry-After at once, never queued holding credit.
   */
  max_connections: z.number().int().positive().max(100_000).optional(),
});

/** What every model has, whatever it produces. */
const commonModelFields = {
  id: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[A-Za-z0-9._:/-]+$/, 'letters, digits and . _ : / - only'),
  name: z.string().optional(),
  owned_by: z.string().min(1),
  description: z.string().optional(),
  created: z.number().int().nonnegative().default(1764547200),
  modalities: z.object({
    input: z.array(z.enum(['text', 'image'])).min(1),
    output: z.array(z.enum(['text', 'image'])).min(1),
  }),
  pricing: pricingSchema,
  routes: z.array(routeSchema).min(1),
  /**
   * Most upstream calls of this model in flight at once across all instances (respects a provider's concurrency
   * quota). Over it, requests are refused with 429 + Retry-After before any hold, never queued.
   */
  max_concurrency: z.number().int().positive().optional(),
};

/** A model whose output is images: served by POST /v1/images/generations and /v1/images/edits. */
export const imageModelSchema = z
  .object({
    kind: z.literal('image'),
    ...commonModelFields,
    prompt_max_length: z.number().int().positive(),
    max_n: z.number().int().min(1).max(4),
    output_formats: z.array(z.enum(['png', 'jpeg', 'webp'])).min(1),
    /** What the upstream actually produces; other requested formats are transcoded. */
    native_output_format: z.enum(['png', 'jpeg', 'webp']),
    streaming: z.boolean(),
    /** Largest `partial_images` value honoured while streaming (0 = no partials). */
    max_partial_images: z.number().int().min(0).max(3).default(0),
    seed: z.boolean(),
    /** Model-specific parameters: width, height, aspect_ratio, resolution, quality, image_size, background... */
    params: z.record(z.string(), paramSpecSchema).default({}),
    sizing: sizingSchema,
    edit: z.object({
      supported: z.boolean(),
      max_images: z.number().int().min(0).max(14),
    }),
  })
  .strict();

/** Request fields of POST /v1/chat/completions that change how a text model samples or stops. */
export const SAMPLING_PARAMETERS = [
  'temperature',
  'top_p',
  'max_tokens',
  'max_completion_tokens',
  'stop',
  'seed',
  'frequency_penalty',
  'presence_penalty',
  'logit_bias',
] as const;
/** Optional capabilities a text model may offer (the docs' `supported_features`). */
export const TEXT_FEATURES = ['tools', 'json', 'structured', 'logprobs', 'reasoning'] as const;

/** A model whose output is text: served by POST /v1/chat/completions. Always priced per token. */
export const textModelSchema = z
  .object({
    kind: z.literal('text'),
    ...commonModelFields,
    /** Most tokens of prompt and completion together. */
    context_window: z.number().int().positive(),
    /** Most completion tokens one request can produce; also the default when the request sets no max_tokens. */
    max_output_tokens: z.number().int().positive(),
    streaming: z.boolean(),
    /** Sampling fields the model honours; the others are accepted, ignored and reported as warnings. */
    supported_sampling_parameters: z.array(z.enum(SAMPLING_PARAMETERS)).default([]),
    supported_features: z.array(z.enum(TEXT_FEATURES)).default([]),
    /**
     * Most choices (OpenAI's `n`) one request may ask for: served by the upstream in one call, each choice with the
     * whole completion budget and billed for its tokens. 1 (the default) = the model answers one choice, and `n` > 1 is
     * ignored with a warning; above a larger limit, `n` is a 400.
     */
    max_choices: z.number().int().min(1).max(128).default(1),
  })
  .strict();

/**
 * A catalog entry. Its `kind` follows from `modalities.output` (text only = a text model, anything with images =
 * an image model), so catalog files do not write it.
 */
export const modelSchema = z.preprocess(
  (entry) => (isRecord(entry) && entry.kind === undefined ? { kind: outputKind(entry.modalities), ...entry } : entry),
  z.discriminatedUnion('kind', [imageModelSchema, textModelSchema]),
);

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function outputKind(modalities: unknown): 'image' | 'text' {
  const output = isRecord(modalities) ? modalities.output : undefined;
  return Array.isArray(output) && output.length > 0 && output.every((item) => item === 'text') ? 'text' : 'image';
}

export const catalogSchema = z
  .object({
    version: z.literal(1),
    models: z.array(modelSchema).min(1),
  })
  .strict();

export type ParamSpec = z.infer<typeof paramSpecSchema>;
export type CatalogFileModel = z.infer<typeof modelSchema>;
export type ImageCatalogFileModel = z.infer<typeof imageModelSchema>;
export type TextCatalogFileModel = z.infer<typeof textModelSchema>;
export type CatalogFile = z.infer<typeof catalogSchema>;
export type PricingRule = z.infer<typeof pricingSchema>;
export type RouteSpec = z.infer<typeof routeSchema>;
export type Sizing = z.infer<typeof sizingSchema>;
