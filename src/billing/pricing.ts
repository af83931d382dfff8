import { divCeil, type Nanos } from '../domain/money.ts';
import type { CompiledTokenRates, ImageCatalogModel, CompiledPricing, TextCatalogModel } from '../catalog/catalog.ts';
import type { NormalizedImageRequest } from '../domain/requests.ts';
import type { UpstreamUsage } from '../domain/usage.ts';

/**
 * Prices a normalised request from the catalog's rule, before any upstream call.
 * `hold` is what is reserved: the most this request can cost. `perImage` and `inputs` let the settlement
 * charge exactly for what was delivered. Rounding: every rule is an integer in nanos except token rates,
 * where the request's token total × rate ÷ 1,000,000 is rounded up once, to the next nano-dollar.
 */
export interface PriceQuote {
  hold: Nanos;
  /** List price of one delivered output image. */
  perImage: Nanos;
  /** Charge for the input (reference) images; due once at least one image is delivered. */
  inputs: Nanos;
  /** How the price was derived, for the ledger and for callers. */
  basis: string;
}

const MEGAPIXEL = 1024 * 1024;

export function quoteImageRequest(model: ImageCatalogModel, request: NormalizedImageRequest): PriceQuote {
  const pricing = model.compiledPricing;
  const n = BigInt(request.n);
  switch (pricing.unit) {
    case 'image': {
      const { price, basis } = perImagePrice(pricing, request);
      const promptBytes = BigInt(Buffer.byteLength(request.prompt, 'utf8'));
      const inputs =
        pricing.inputImage * BigInt(request.inputImages.length) + divCeil(promptBytes * pricing.promptPerMillionBytes, 1_000_000n);
      const hold = price * n + inputs + tokenSettlementRoom(pricing, request, price * n);
      return { hold, perImage: price, inputs, basis };
    }
    case 'megapixel': {
      const outputMegapixels = BigInt(Math.max(1, Math.ceil((request.width * request.height) / MEGAPIXEL)));
      const perImage = pricing.first + (outputMegapixels - 1n) * pricing.additional;
      const inputMegapixels = request.inputImages.reduce((sum, image) => sum + Math.ceil((image.width * image.height) / MEGAPIXEL), 0);
      const inputs = pricing.input * BigInt(inputMegapixels);
      return {
        hold: perImage * n + inputs,
        perImage,
        inputs,
        basis: `per megapixel (${outputMegapixels} MP out, ${inputMegapixels} MP in)`,
      };
    }
    case 'token': {
      // Prompt tokens cannot exceed the prompt's UTF-8 bytes (byte-level BPE), so that bounds the input side.
      const promptTokens = BigInt(Buffer.byteLength(request.prompt, 'utf8'));
      const inputs = divCeil(promptTokens * pricing.inputPerMillion, 1_000_000n);
      const perImage = divCeil(BigInt(pricing.imageEstimateTokens) * pricing.imageOutputPerMillion, 1_000_000n);
      return { hold: perImage * n + inputs, perImage, inputs, basis: 'per token (estimate held)' };
    }
  }
}

/**
 * One output image's list price: the table entry for the request's `by` values (most specific key first), or, for a
 * custom "WxH" size the table cannot key, the custom-size price per started megapixel (1 MP = 1024×1024 px).
 */
function perImagePrice(
  pricing: Extract<CompiledPricing, { unit: 'image' }>,
  request: NormalizedImageRequest,
): { price: Nanos; basis: string } {
  const values = pricing.by.map((param) => String(request.params[param] ?? ''));
  const key = values.join('/');
  if (pricing.customSizeMegapixel.size > 0 && !pricing.table.has(key)) {
    const megapixels = BigInt(Math.max(1, Math.ceil((request.width * request.height) / MEGAPIXEL)));
    const { price, matched } = lookupByPrefix(pricing.customSizeMegapixel, values.slice(0, -1).join('/'), pricing.base);
    return {
      price: price * megapixels,
      basis: `per image (custom size ${request.width}x${request.height}: ${megapixels} MP${matched ? `, ${matched}` : ''})`,
    };
  }
  const { price, matched } = lookupByPrefix(pricing.table, key, pricing.base);
  return { price, basis: matched ? `per image (${matched})` : 'per image' };
}

/** Reference-image and partial-render token allowances for the hold of token-settled models [R: estimates]. */
const HOLD_TOKENS_PER_REFERENCE_IMAGE = 6_240;
const HOLD_TOKENS_PER_PARTIAL_IMAGE = 100;

/**
 * Extra hold for per-image models settled from the upstream's token usage (`settle: upstream_tokens`). Their list
 * price covers the image output only, yet the upstream also bills the prompt, reference images and partial renders,
 * and its output token counts can land slightly above the rounded list price (4,160 tokens × $32/M = $0.13312 vs
 * $0.133). Without this room the settled token cost would be cut down to the hold. Prompt tokens never exceed the
 * prompt's UTF-8 bytes (byte-level BPE); 10% of the list output covers the rounding. Settlement is still the exact
 * token cost, so the room is only ever reserved, never charged.
 */
function tokenSettlementRoom(
  pricing: Extract<CompiledPricing, { unit: 'image' }>,
  request: NormalizedImageRequest,
  listOutput: Nanos,
): Nanos {
  if (pricing.settle !== 'upstream_tokens' || !pricing.tokens) return 0n;
  const rates = pricing.tokens;
  // × n: a batch fanned out into several upstream calls pays for the prompt and the references in each.
  const promptTokens = BigInt(request.n * Buffer.byteLength(request.prompt, 'utf8'));
  const referenceTokens = BigInt(request.n * request.inputImages.length * HOLD_TOKENS_PER_REFERENCE_IMAGE);
  const partialTokens = BigInt(request.n * request.partialImages * HOLD_TOKENS_PER_PARTIAL_IMAGE);
  const tokens =
    promptTokens * rates.inputPerMillion + referenceTokens * rates.imageInputPerMillion + partialTokens * rates.imageOutputPerMillion;
  return divCeil(tokens, 1_000_000n) + divCeil(listOutput, 10n);
}

function lookupByPrefix(table: Map<string, Nanos>, key: string, fallback: Nanos): { price: Nanos; matched: string | undefined } {
  // "high/1024x1536" → "high/1024x1536", then "high", then the base price.
  let candidate = key;
  while (candidate) {
    const price = table.get(candidate);
    if (price !== undefined) return { price, matched: candidate };
    const cut = candidate.lastIndexOf('/');
    if (cut < 0) break;
    candidate = candidate.slice(0, cut);
  }
  return { price: fallback, matched: undefined };
}

export interface Settlement {
  cost: Nanos;
  /**
   * What the upstream's bill for this request is, when it said so: its reported cost, else its reported tokens at its
   * rates (catalog `tokens`). Kept in the ledger next to our charge, for the operator's margin.
   */
  upstreamCost: Nanos | undefined;
}

/**
 * The amount to charge once images are delivered: list price × delivered images (+ inputs), or token-based
 * for token-priced models. Never more than the hold, never negative, whatever the upstream reported.
 */
export function settleImageCost(
  model: ImageCatalogModel,
  quote: PriceQuote,
  delivered: number,
  usage: UpstreamUsage | undefined,
): Settlement {
  const pricing = model.compiledPricing;
  const upstreamCost = sane(usage?.costNanos) ?? upstreamTokenCost(pricing, usage);
  if (delivered <= 0) return { cost: 0n, upstreamCost };
  let cost = quote.perImage * BigInt(delivered) + quote.inputs;
  if (pricing.unit === 'token' && usage) {
    const fromTokens = tokenCost(pricing, usage);
    if (fromTokens !== undefined) cost = fromTokens;
  } else if (pricing.unit !== 'token' && pricing.settle === 'upstream_tokens' && pricing.tokens && usage) {
    const fromTokens = tokenCost(pricing.tokens, usage);
    if (fromTokens !== undefined) cost = fromTokens;
  } else if (pricing.unit !== 'token' && pricing.settle === 'upstream_cost' && upstreamCost !== undefined && upstreamCost > 0n) {
    // Markup in basis points keeps the arithmetic integral: cost × (10000 + 100·markup) / 10000, rounded up.
    const basisPoints = BigInt(Math.round(pricing.markupPercent * 100));
    cost = divCeil(upstreamCost * (10_000n + basisPoints), 10_000n);
  }
  if (cost > quote.hold) cost = quote.hold;
  if (cost < 0n) cost = 0n;
  return { cost, upstreamCost };
}

/** The upstream's cost from the token usage it reported, at its rates (catalog `tokens`), when both are known. */
function upstreamTokenCost(pricing: CompiledPricing, usage: UpstreamUsage | undefined): Nanos | undefined {
  if (!usage || pricing.unit === 'token' || !pricing.tokens) return undefined;
  return tokenCost(pricing.tokens, usage);
}

/**
 * A chat request's hold: its prompt tokens (all at the uncached input rate, the dearest) plus the most completion
 * tokens it allows (max tokens × choices: every choice of `n` has the whole budget, the prompt is billed once, as
 * OpenAI bills it), at the catalog's per-token rates, rounded up once to the next nano-dollar. The same rates and
 * rounding as every token-priced image model (tokenCost below).
 */
export interface ChatPriceQuote {
  hold: Nanos;
  basis: string;
}

export function quoteChatRequest(
  model: TextCatalogModel,
  tokens: { promptTokens: number; maxOutputTokens: number; choices?: number },
): ChatPriceQuote {
  const choices = tokens.choices ?? 1;
  const outputTokens = tokens.maxOutputTokens * choices;
  const hold = tokenCost(model.compiledPricing, { inputTokens: tokens.promptTokens, outputTokens }) ?? 0n;
  const completion = choices > 1 ? `${choices} × ${tokens.maxOutputTokens}` : `${tokens.maxOutputTokens}`;
  return { hold, basis: `per token (hold: ${tokens.promptTokens} prompt + ${completion} max completion tokens)` };
}

/** The charge for a finished chat completion: the tokens it used at the catalog rates, never more than the hold. */
export function settleChatCost(model: TextCatalogModel, quote: ChatPriceQuote, usage: UpstreamUsage): Nanos {
  const cost = tokenCost(model.compiledPricing, usage) ?? 0n;
  return cost > quote.hold ? quote.hold : cost;
}

type TokenRates = Pick<CompiledTokenRates, 'inputPerMillion' | 'cachedInputPerMillion' | 'outputPerMillion' | 'imageOutputPerMillion'> & {
  imageInputPerMillion?: Nanos;
};

/**
 * Σ tokens × rate ÷ 1M, rounded up once; undefined when the usage holds no usable token counts. Cached and image
 * tokens are counted within inputTokens / outputTokens (OpenAI's convention) and billed at their own rates.
 */
function tokenCost(rates: TokenRates, usage: UpstreamUsage): Nanos | undefined {
  const cached = saneCount(usage.cachedInputTokens);
  const imageIn = saneCount(usage.inputImageTokens);
  const textIn = Math.max(0, saneCount(usage.inputTokens) - cached - imageIn);
  const imageOut = saneCount(usage.outputImageTokens);
  const textOut = Math.max(0, saneCount(usage.outputTokens) - imageOut);
  if (textIn + cached + imageIn + imageOut + textOut === 0) return undefined;
  const total =
    BigInt(textIn) * rates.inputPerMillion +
    BigInt(cached) * rates.cachedInputPerMillion +
    BigInt(imageIn) * (rates.imageInputPerMillion ?? rates.inputPerMillion) +
    BigInt(imageOut) * rates.imageOutputPerMillion +
    BigInt(textOut) * rates.outputPerMillion;
  return divCeil(total, 1_000_000n);
}

function saneCount(value: number | undefined): number {
  return value !== undefined && Number.isSafeInteger(value) && value > 0 && value < 1e9 ? value : 0;
}

function sane(value: bigint | undefined): bigint | undefined {
  return value !== undefined && value >= 0n ? value : undefined;
}
