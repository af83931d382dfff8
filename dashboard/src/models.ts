import { request } from './api.ts';
import { fromNanos, toNanos } from './format.ts';
import { temporaryKey } from './session.tsx';

// GET /v1/models cards (src/catalog/model-card.ts): everything a caller needs to build a valid request and price it.

export interface ParameterSpec {
  type: string;
  required?: boolean;
  enum?: (string | number)[];
  min?: number;
  max?: number;
  multiple_of?: number;
  max_length?: number;
  default?: unknown;
  description?: string;
}

export interface ModelPricing {
  currency: 'USD';
  unit: 'image' | 'megapixel' | 'token';
  per_image?: string;
  by?: string[];
  table?: Record<string, string>;
  per_input_image?: string;
  prompt_per_million_bytes?: string;
  custom_size_per_megapixel?: Record<string, string>;
  first_megapixel?: string;
  additional_megapixel?: string;
  input_megapixel?: string;
  input_per_million?: string;
  cached_input_per_million?: string;
  output_per_million?: string;
  image_output_per_million?: string;
  rule: string;
  settle?: 'list' | 'upstream_tokens' | 'upstream_cost';
  markup_percent?: number;
}

export interface ModelCard {
  id: string;
  name?: string;
  description?: string;
  owned_by: string;
  kind: 'image' | 'text';
  prompt_max_length?: number;
  max_n?: number;
  output_formats?: string[];
  streaming?: boolean;
  context_window?: number;
  max_output_tokens?: number;
  sizing?: {
    style: 'pixel_dimensions' | 'resolution_tier' | 'aspect_ratio' | 'preset_size';
    fields: string[];
    sizes?: Record<string, unknown>;
    custom_size?: { min_side?: number; max_side?: number; multiple_of?: number; max_pixels?: number };
  };
  parameters: Record<string, ParameterSpec & Record<string, unknown>>;
  edit?: { supported: boolean; max_images?: number };
  supported_features?: string[];
  pricing: ModelPricing;
}

/** Every model this server offers, signed in or not (the public GET /dashboard/api/models: the same cards). */
export async function listOfferedModels(): Promise<ModelCard[]> {
  const answer = await request<{ data: ModelCard[] }>('GET', '/dashboard/api/models');
  return answer.data;
}

/** The models the signed-in account's keys may call, through the playground's temporary key. */
export async function listModels(accountId: string | null = null): Promise<ModelCard[]> {
  const apiKey = await temporaryKey(accountId);
  const answer = await request<{ data: ModelCard[] }>('GET', '/v1/models', { apiKey });
  return answer.data;
}

export const SIZING_STYLES: Record<string, string> = {
  pixel_dimensions: 'Pixel dimensions (width × height)',
  resolution_tier: 'Resolution tier (aspect_ratio + resolution)',
  aspect_ratio: 'Aspect ratio only',
  preset_size: 'Preset size (image_size)',
};

const money = (nanos: bigint) => `$${fromNanos(nanos)}`;
const MEGAPIXEL = 1_048_576;

/** The price rule in plain words, and a worked example computed exactly (nano-dollars, like the server). */
export function explainPrice(card: ModelCard): { rule: string; example: string; settlement?: string } {
  const pricing = card.pricing;
  const settlement =
    pricing.settle === 'upstream_tokens'
      ? 'This list price is the most a request can cost and is what is held up front; the charge is the token usage the provider reports, at the rates above, never more than the hold.'
      : pricing.settle === 'upstream_cost'
        ? `This list price is held up front; the charge is the cost the provider reports${pricing.markup_percent ? ` plus ${pricing.markup_percent}%` : ''}, never more than the hold.`
        : undefined;
  if (pricing.unit === 'image') {
    const promptRate = pricing.prompt_per_million_bytes ? toNanos(pricing.prompt_per_million_bytes) : 0n;
    const extras = [
      pricing.custom_size_per_megapixel
        ? ` A custom size costs, per started megapixel (1 MP = 1,048,576 pixels), ${Object.entries(pricing.custom_size_per_megapixel)
            .map(([key, price]) => `${money(toNanos(price))} at ${key}`)
            .join(', ')}.`
        : '',
      pricing.per_input_image ? ` Each reference image on an edit adds ${money(toNanos(pricing.per_input_image))}.` : '',
      promptRate ? ` The prompt adds ${money(promptRate)} per million UTF-8 bytes, once per request.` : '',
    ].join('');
    // Worked example: 2 images (and, when the prompt is priced, a 100-byte prompt), rounded up like the server.
    const withPrompt = (images: bigint, label: string, each: bigint) => {
      const prompt = ceilDiv(100n * promptRate, 1_000_000n);
      return promptRate
        ? `${label} with a 100-byte prompt: ${images} × ${money(each)} + 100 × ${money(promptRate)} / 1,000,000 = ${money(images * each + prompt)}.`
        : `${label}: ${images} × ${money(each)} = ${money(images * each)}.`;
    };
    if (pricing.by?.length && pricing.table && Object.keys(pricing.table).length) {
      const [key, price] = Object.entries(pricing.table)[0];
      return {
        rule: `Per output image, priced by ${pricing.by.join(' and ')} (the table below)${
          pricing.custom_size_per_megapixel || tableCoversEveryValue(card)
            ? '.'
            : `; anything not in the table costs ${money(toNanos(pricing.per_image ?? '0'))} per image.`
        }${extras}`,
        example: withPrompt(2n, `2 images at ${key.split('/').join(', ')}`, toNanos(price)),
        settlement,
      };
    }
    const each = toNanos(pricing.per_image ?? '0');
    return {
      rule: `${money(each)} per output image, at every size.${extras}`,
      example: withPrompt(4n, '4 images', each),
      settlement,
    };
  }
  if (pricing.unit === 'megapixel') {
    const first = toNanos(pricing.first_megapixel ?? '0');
    const additional = toNanos(pricing.additional_megapixel ?? '0');
    const input = pricing.input_megapixel ? ` Each reference image adds ${money(toNanos(pricing.input_megapixel))} per started megapixel.` : '';
    const megapixels = BigInt(Math.ceil((2048 * 2048) / MEGAPIXEL));
    return {
      rule: `Per output image: ${money(first)} for the first megapixel and ${money(additional)} for each further started megapixel (1 MP = 1,048,576 pixels).${input}`,
      example: `One 2048×2048 image is ${megapixels} MP: ${money(first)} + ${megapixels - 1n} × ${money(additional)} = ${money(first + (megapixels - 1n) * additional)}.`,
      settlement,
    };
  }
  const inputRate = toNanos(pricing.input_per_million ?? '0');
  const outputRate = toNanos(pricing.output_per_million ?? pricing.image_output_per_million ?? '0');
  const cachedRate = pricing.cached_input_per_million ? toNanos(pricing.cached_input_per_million) : undefined;
  // Exact: tokens × (nanos per million) / 1,000,000, rounded up to the next nano-dollar per request.
  const total = ceilDiv(1000n * inputRate + 500n * outputRate, 1_000_000n);
  return {
    rule: `${money(inputRate)} per million prompt tokens${cachedRate !== undefined ? ` (${money(cachedRate)} when served from cache)` : ''} and ${money(outputRate)} per million ${card.kind === 'text' ? 'completion' : 'output'} tokens, rounded up to the next nano-dollar per request.`,
    example: `1,000 prompt tokens and 500 completion tokens: (1,000 × ${money(inputRate)} + 500 × ${money(outputRate)}) / 1,000,000 = ${money(total)}.`,
    settlement,
  };
}

function ceilDiv(a: bigint, b: bigint): bigint {
  return (a + b - 1n) / b;
}

/** Whether every combination of the `by` parameters' allowed values has a price (most specific key first, then prefixes). */
function tableCoversEveryValue(card: ModelCard): boolean {
  const { by = [], table = {} } = card.pricing;
  let combos: string[][] = [[]];
  for (const param of by) {
    const values = card.parameters[param]?.enum;
    if (!values) return false;
    combos = combos.flatMap((combo) => values.map((value) => [...combo, String(value)]));
  }
  return combos.every((combo) => combo.some((_, cut) => table[combo.slice(0, combo.length - cut).join('/')] !== undefined));
}

