import type { Warning } from '../../domain/warnings.ts';
import { forwardableExtras } from '../shared/forwarded-extras.ts';
import type { NormalizedImageRequest } from '../types.ts';

/** The fal request side: our normalised request as the body of a fal queue submit (fal-image-adapter.ts sends it). */

export const PROVIDER = 'fal.ai';

/** Parameters this adapter knows how to send to fal (see buildRequestBody). */
const SIZING_PARAMS = new Set(['image_size', 'aspect_ratio', 'resolution', 'width', 'height']);

/**
 * The upstream request body (the bare input object, no `input` wrapper [V S-fal]), every field named. Extras go
 * in first so they can never override what Deepshi owns; `undefined` fields are left out by JSON.stringify.
 */
export function buildRequestBody(request: NormalizedImageRequest): { body: Record<string, unknown>; warnings: Warning[] } {
  const { fields, warnings } = forwardableExtras(request.extra, { owned: OWNED_FIELDS, provider: PROVIDER });
  const { params } = request;
  if (params.watermark === true) {
    warnings.push({ type: 'unsupported', param: 'watermark', message: `${PROVIDER} has no watermark option; the image carries no mark.` });
  }
  for (const name of Object.keys(params)) {
    if (!SIZING_PARAMS.has(name) && name !== 'watermark') {
      warnings.push({ type: 'unsupported', param: name, message: `'${name}' is not sent to ${PROVIDER}; ignored.` });
    }
  }
  const body: Record<string, unknown> = {
    ...fields,
    prompt: request.prompt,
    image_size: imageSize(request),
    aspect_ratio: typeof params.aspect_ratio === 'string' ? params.aspect_ratio : undefined,
    resolution: typeof params.resolution === 'string' ? params.resolution : undefined,
    num_images: request.n,
    // Above 1 every generation may return several images, each billed: the count is Deepshi's.
    max_images: undefined,
    seed: request.seed,
    enable_safety_checker: true,
    // CDN links keep the queue result small (they are copied at once); inline data URIs are handled too.
    sync_mode: false,
    image_urls:
      request.inputImages.length > 0
        ? request.inputImages.map((image) => `data:${image.mediaType};base64,${image.bytes.toString('base64')}`)
        : undefined,
  };
  return { body, warnings };
}

const OWNED_FIELDS = ['prompt', 'image_size', 'num_images', 'max_images', 'seed', 'enable_safety_checker', 'sync_mode', 'image_urls'];

/** fal's `image_size`: a preset name as is, "WxH" (or width/height models) as {width, height}. */
function imageSize(request: NormalizedImageRequest): string | { width: number; height: number } | undefined {
  const preset = request.params.image_size;
  if (typeof preset === 'string') return /^\d+x\d+$/.test(preset) ? { width: request.width, height: request.height } : preset;
  if ('width' in request.params || 'height' in request.params) return { width: request.width, height: request.height };
  return undefined;
}
