import { divCeil, type Nanos } from '../domain/money.ts';
import type { CatalogModel } from '../catalog/catalog.ts';
import type { NormalizedImageRequest, UpstreamUsage } from '../providers/types.ts';

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

export function quoteImageRequest(model: CatalogModel, request: NormalizedImageRequest): PriceQuote {
  const pricing = model.compiledPricing;
  const n = BigInt(request.n);
  switch (pricing.unit) {
    case 'image': {
      const key = pricing.by.map((param) => String(request.params[param] ?? '')).join('/');
      const { price, matched } = lookupByPrefix(pricing.table, key, pricing.base);
      const inputs = pricing.inputImage * BigInt(request.inputImages.length);
      return { hold: price * n + inputs, perImage: price, inputs, basis: matched ? `per image (${matched})` : 'per image' };
    }
    case 'megapixel': {
      const outputMegapixels = BigInt(Math.max(1, Math.ceil((request.width * request.height) / MEGAPIXEL)));
      const perImage = pricing.first + (outputMegapixels - 1n) * pricing.additional;
      const inputMegapixels = request.inputImages.reduce((sum, image) => sum + Math.ceil((image.width * image.height) / MEGAPIXEL), 0);
      const inputs = pricing.input * BigInt(inputMegapixels);
      return { hold: perImage * n + inputs, perImage, inputs, basis: `per megapixel (${outputMegapixels} MP out, ${inputMegapixels} MP in)` };
    }
    case 'token': {
      // Prompt tokens cannot exceed characters; reference images are estimated at the image-token estimate.
      const promptTokens = BigInt(request.prompt.length);
      const inputs = divCeil(promptTokens * pricing.inputPerMillion, 1_000_000n);
      const perImage = divCeil(BigInt(pricing.imageEstimateTokens) * pricing.imageOutputPerMillion, 1_000_000n);
      return { hold: perImage * n + inputs, perImage, inputs, basis: 'per token (estimate held)' };
    }
  }
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
  /** What the upstream said it cost, when it said so (kept in the ledger next to our charge). */
  upstreamCost: Nanos | undefined;
}

/**
 * The amount to charge once images are delivered: list price × delivered images (+ inputs), or token-based
 * for token-priced models. Never more than the hold, never negative, whatever the upstream reported.
 */
export function settleImageCost(model: CatalogModel, quote: PriceQuote, delivered: number, usage: UpstreamUsage | undefined): Settlement {
  const upstreamCost = sane(usage?.costNanos);
  if (delivered <= 0) return { cost: 0n, upstreamCost };
  let cost = quote.perImage * BigInt(delivered) + quote.inputs;
  const pricing = model.compiledPricing;
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

/** Σ tokens × rate ÷ 1M, rounded up once; undefined when the upstream reported no usable token counts. */
function tokenCost(
  rates: { inputPerMillion: Nanos; cachedInputPerMillion: Nanos; outputPerMillion: Nanos; imageOutputPerMillion: Nanos; imageInputPerMillion?: Nanos },
  usage: UpstreamUsage,
): Nanos | undefined {
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
