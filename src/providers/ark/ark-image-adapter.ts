import type { Warning } from '../../domain/warnings.ts';
import { mediaTypeOf } from '../../images/encode.ts';
import { probeBase64 } from '../../images/probe.ts';
import { forwardableExtras } from '../shared/forwarded-extras.ts';
import { failureFromStatus, sanitize, timeoutsFromOptions, upstreamRequest } from '../shared/http.ts';
import { eachImageCall, type SingleImageOutcome } from '../shared/single-image-calls.ts';
import {
  ProviderError,
  type ImageAdapter,
  type ImageAdapterCapabilities,
  type ImageCallContext,
  type ImageGenerationResult,
  type NormalizedImageRequest,
  type RouteTarget,
} from '../types.ts';
import { paramOf, parseError, parseResponse, refusalOf } from './ark-api.ts';

/**
 * BytePlus ModelArk image generation (Seedream), one synchronous JSON call per image
 * (docs/providers.md, upstream wire contracts). Ark has no `n`; sequential (multi-image) generation stays disabled, so a
 * request for n images is n calls. The answer is base64, so nothing is downloaded from Ark's CDN.
 */
const PROVIDER = 'BytePlus ModelArk';
const DEFAULT_BASE_URL = 'https://ark.ap-southeast.bytepluses.com';
const MAX_INPUT_IMAGES = 14;

export class ArkImageAdapter implements ImageAdapter {
  readonly provider = 'ark';
  readonly capabilities: ImageAdapterCapabilities = {
    maxImagesPerCall: 1,
    // Seedream 4.x ignores seeds [V S-ai]; warned about per request.
    supportsSeed: false,
    supportsPartialImages: false,
    supportsEdits: true,
    nativeFormats: ['jpeg'],
  };

  isConfigured(route: RouteTarget): boolean {
    return Boolean(route.credential && route.upstreamModel);
  }

  generate(request: NormalizedImageRequest, route: RouteTarget, context: ImageCallContext): Promise<ImageGenerationResult> {
    return eachImageCall(request, context, (call) => this.generateOne(call, route, context.signal));
  }

  private async generateOne(request: NormalizedImageRequest, route: RouteTarget, signal: AbortSignal): Promise<SingleImageOutcome> {
    const base = (route.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    const { body, warnings } = buildRequestBody(request, route.upstreamModel!);
    const response = await upstreamRequest({
      method: 'POST',
      url: `${base}/api/v3/images/generations`,
      headers: { authorization: `Bearer ${route.credential!}`, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
      signal,
      timeouts: timeoutsFromOptions(route.options),
      provider: PROVIDER,
      // Generation is synchronous: a lost answer may still be a generated (and billed) image.
      sentMeansAccepted: true,
    });
    if (response.status !== 200) {
      const error = parseError(response.json());
      const refusal = refusalOf(error.code);
      if (refusal) throw new ProviderError('refused', refusalMessage(refusal, error.message));
      const message = error.message ?? error.code;
      throw failureFromStatus(PROVIDER, response, {
        message,
        param: error.code === 'InvalidParameter' ? paramOf(error, request.extra) : undefined,
      });
    }

    const parsed = parseResponse(response.json());
    const items = parsed?.data ?? [];
    const image = items.find((item) => item.b64_json);
    if (!image?.b64_json) {
      const failed = items.find((item) => item.error)?.error;
      const refusal = refusalOf(failed?.code ?? undefined);
      if (refusal) throw new ProviderError('refused', refusalMessage(refusal, failed?.message ?? undefined), { accepted: true });
      throw new ProviderError('failed', `${PROVIDER} answered without an image${failed?.message ? `: ${sanitize(failed.message)}` : ''}`, {
        accepted: true,
      });
    }
    const probe = probeBase64(image.b64_json);
    if (!probe || probe.format === 'gif')
      throw new ProviderError('failed', `${PROVIDER} returned data that is not an image`, { accepted: true });
    return {
      image: { base64: image.b64_json, mediaType: mediaTypeOf(probe.format) },
      warnings,
      usage: usageOf(parsed?.usage?.generated_images),
    };
  }
}

/**
 * The upstream request body, every field named. Extras go in first so they can never override what Deepshi
 * owns; `undefined` fields are left out by JSON.stringify (so an extra named like an owned field is removed).
 */
export function buildRequestBody(
  request: NormalizedImageRequest,
  upstreamModel: string,
): { body: Record<string, unknown>; warnings: Warning[] } {
  if (request.inputImages.length > MAX_INPUT_IMAGES) {
    throw new ProviderError('invalid_request', `${PROVIDER} takes at most ${MAX_INPUT_IMAGES} reference images.`, { param: 'image' });
  }
  const { fields, warnings } = forwardableExtras(request.extra, { owned: OWNED_FIELDS, provider: PROVIDER });
  if (request.seed !== undefined) {
    warnings.push({
      type: 'unsupported',
      param: 'seed',
      message: `${request.model} ignores seeds on the ${PROVIDER} route; 'seed' was not sent.`,
    });
  }
  const body: Record<string, unknown> = {
    ...fields,
    model: upstreamModel,
    prompt: request.prompt,
    size: arkSize(request),
    // b64 keeps the image off Ark's CDN (no download, no SSRF surface); the adapter reads only b64_json.
    response_format: 'b64_json',
    // Ark's default is true (a visible mark); Deepshi's is false unless the caller asks.
    watermark: request.params.watermark === true,
    // One image per call: sequential mode could return up to 15 images, each billed.
    sequential_image_generation: 'disabled',
    sequential_image_generation_options: undefined,
    stream: undefined,
    seed: undefined,
    image:
      request.inputImages.length > 0
        ? request.inputImages.map((image) => `data:${image.mediaType};base64,${image.bytes.toString('base64')}`)
        : undefined,
  };
  return { body, warnings };
}

const OWNED_FIELDS = [
  'model',
  'prompt',
  'size',
  'response_format',
  'watermark',
  'sequential_image_generation',
  'sequential_image_generation_options',
  'stream',
  'seed',
  'image',
];

/** `auto_2K`/`auto_4K` let the model pick the ratio, which is what Ark's "2K"/"4K" mean; everything else is the exact size. */
function arkSize(request: NormalizedImageRequest): string {
  const preset = request.params.image_size;
  if (preset === 'auto_2K') return '2K';
  if (preset === 'auto_4K') return '4K';
  return `${request.width}x${request.height}`;
}

function usageOf(generated: number | null | undefined): SingleImageOutcome['usage'] {
  // One image was asked for: a count outside 0..1 is a reporting error and is ignored.
  return typeof generated === 'number' && Number.isInteger(generated) && generated >= 0 && generated <= 1
    ? { billedImages: generated }
    : undefined;
}

function refusalMessage(refusal: 'input' | 'output' | 'other', upstream: string | undefined): string {
  const what = refusal === 'input' ? 'the request (prompt or input image)' : refusal === 'output' ? 'the generated image' : 'the request';
  return `${PROVIDER}'s content filter refused ${what}${upstream ? `: ${sanitize(upstream)}` : '.'}`;
}
