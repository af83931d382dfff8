import type { Warning } from '../../domain/warnings.ts';
import { base64From, base64IndexOf, base64Slice, base64StartsWith } from '../../images/base64.ts';
import { forwardableExtras } from '../shared/forwarded-extras.ts';
import { maxResponseBytes, originOf, timeoutsFromOptions, upstreamRequest } from '../shared/http.ts';
import { safeDownload } from '../shared/safe-download.ts';
import {
  ProviderError,
  type GeneratedImage,
  type ImageAdapter,
  type ImageAdapterCapabilities,
  type ImageCallContext,
  type ImageGenerationResult,
  type NormalizedImageRequest,
  type RouteTarget,
} from '../types.ts';
import { costNanos, imageResponseSchema, xaiFailure } from './xai-api.ts';

/**
 * xAI Grok Imagine (grok-imagine-image, grok-imagine-image-quality) through `POST /v1/images/generations` and
 * `POST /v1/images/edits`, both JSON (docs/providers.md, upstream wire contracts). Synchronous; base64 JPEG asked for, result links
 * downloaded safely if xAI sends links anyway. An output refusal is HTTP 200 with `respect_moderation: false`
 * and a placeholder image, which is never returned. Cost comes back as `usage.cost_in_usd_ticks`.
 *
 * Route options: `timeouts` ({connect_ms, first_byte_ms, total_ms}) and `max_response_bytes`.
 */
export const XAI_DEFAULT_BASE_URL = 'https://api.x.ai';

/** Hosts xAI delivers result images from (imgen.x.ai in every sample seen). */
const RESULT_HOSTS = ['imgen.x.ai', '*.x.ai'];

/** Fields the adapter writes; a forwarded extra of the same name is dropped with a warning. */
const OWNED_FIELDS = ['model', 'prompt', 'n', 'response_format', 'aspect_ratio', 'resolution', 'image', 'images'];
/** Fields xAI rejects outright ("Argument not supported: size"): never sent, whoever asks. */
const REJECTED_FIELDS = new Set(['size', 'style']);

export class XaiImageAdapter implements ImageAdapter {
  readonly provider = 'xai';
  readonly capabilities: ImageAdapterCapabilities = {
    // xAI's proto allows n up to 10; Vercel's xAI provider, which runs against the real API, sends at most 3 per
    // call. The gateway's observed limit is the safe one, and it keeps one call's payload and latency bounded.
    maxImagesPerCall: 3,
    supportsSeed: false,
    supportsPartialImages: false,
    supportsEdits: true,
    nativeFormats: ['jpeg'],
  };

  isConfigured(route: RouteTarget): boolean {
    return Boolean(route.credential);
  }

  async generate(request: NormalizedImageRequest, route: RouteTarget, context: ImageCallContext): Promise<ImageGenerationResult> {
    const edit = request.inputImages.length > 0;
    const { body, warnings, forwardedKeys } = buildRequestBody(request, route.upstreamModel ?? request.model);
    const base = (route.baseUrl ?? XAI_DEFAULT_BASE_URL).replace(/\/+$/, '');
    const timeouts = timeoutsFromOptions(route.options);
    const maxBytes = maxResponseBytes(route.options);
    const response = await upstreamRequest({
      method: 'POST',
      url: `${base}/v1/images/${edit ? 'edits' : 'generations'}`,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${route.credential ?? ''}` },
      body: JSON.stringify(body),
      signal: context.signal,
      timeouts,
      maxBytes,
      provider: 'xAI',
      // Synchronous generation: once sent, xAI may be generating (and billing) the images.
      sentMeansAccepted: true,
    });
    if (response.status !== 200) throw xaiFailure(response, forwardedKeys);

    const json = response.json();
    const parsed = json === undefined || json === null || typeof json !== 'object' ? undefined : imageResponseSchema.safeParse(json);
    if (!parsed?.success)
      throw new ProviderError('failed', 'xAI sent an answer that is not an image-response JSON object.', { accepted: true });
    const items = parsed.data.data ?? [];
    if (items.length > request.n) {
      warnings.push({
        type: 'other',
        message: `xAI returned ${items.length} images for ${request.n} asked; the extra ones were discarded.`,
      });
    } else if (items.length > 0 && items.length < request.n) {
      warnings.push({
        type: 'other',
        message: `xAI returned only ${items.length} of ${request.n} images; you are charged only for the images returned.`,
      });
    }
    const wanted = items.slice(0, request.n);
    const moderated = wanted.filter((item) => item.respect_moderation === false).length;

    const settled = await Promise.allSettled(
      wanted.map(async (item): Promise<GeneratedImage | undefined> => {
        // The placeholder xAI puts in place of a moderated image is never delivered.
        if (item.respect_moderation === false) return undefined;
        const revisedPrompt = item.revised_prompt ? item.revised_prompt : undefined;
        if (item.b64_json && item.b64_json.length > 0) {
          const comma = base64StartsWith(item.b64_json, 'data:') ? base64IndexOf(item.b64_json, ',') : -1;
          const mediaType = comma > 0 ? base64Slice(item.b64_json, 5, comma).split(';')[0] : item.mime_type;
          return {
            base64: comma > 0 ? base64From(item.b64_json, comma + 1) : item.b64_json,
            mediaType: imageType(mediaType),
            revisedPrompt,
          };
        }
        if (item.url) {
          const downloaded = await safeDownload(
            item.url,
            { allowedHosts: RESULT_HOSTS, trustedOrigins: originOf(route.baseUrl), provider: 'xAI', maxBytes, timeoutMs: timeouts.totalMs },
            context.signal,
          );
          return {
            base64: downloaded.bytes.toString('base64'),
            mediaType: imageType(downloaded.contentType ?? item.mime_type),
            revisedPrompt,
          };
        }
        throw new ProviderError('failed', 'xAI returned an image entry with neither data nor a link.', { accepted: true });
      }),
    );
    const images = settled.flatMap((result) => (result.status === 'fulfilled' && result.value ? [result.value] : []));
    const failures = settled.flatMap((result) => (result.status === 'rejected' ? [result.reason as unknown] : []));

    if (images.length === 0) {
      if (failures.length > 0) throw failures[0];
      if (moderated > 0) {
        throw new ProviderError(
          'refused',
          `xAI's moderation withheld the generated image${moderated === 1 ? '' : 's'} (respect_moderation: false).`,
        );
      }
      throw new ProviderError('failed', 'xAI returned no image.', { accepted: true });
    }
    if (moderated > 0) {
      warnings.push({
        type: 'other',
        message: `${moderated} of ${request.n} images were withheld by xAI's moderation; you are charged only for the images returned.`,
      });
    }
    if (failures.length > 0) {
      const reason = failures[0] instanceof Error ? failures[0].message : 'unknown error';
      warnings.push({
        type: 'other',
        message: `${failures.length} of ${request.n} images could not be fetched from xAI (${reason}); you are charged only for the images returned.`,
      });
    }
    const cost = costNanos(parsed.data.usage?.cost_in_usd_ticks, images.length, items.length);
    return { images, warnings, usage: cost === undefined ? undefined : { costNanos: cost } };
  }
}

/**
 * The body for /v1/images/generations or /v1/images/edits, every upstream field named here. Forwarded extras go
 * in first (minus URLs and the fields xAI rejects); the fields we depend on are written after them.
 */
export function buildRequestBody(
  request: NormalizedImageRequest,
  upstreamModel: string,
): { body: Record<string, unknown>; warnings: Warning[]; forwardedKeys: string[] } {
  const warnings: Warning[] = [];
  if (request.seed !== undefined)
    warnings.push({ type: 'unsupported', param: 'seed', message: 'xAI image models take no seed; it was ignored.' });
  const extra: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(request.extra)) {
    if (REJECTED_FIELDS.has(key))
      warnings.push({ type: 'unsupported', param: key, message: `xAI does not support '${key}'; it was not sent.` });
    else extra[key] = value;
  }
  const { fields: forwarded, warnings: extraWarnings } = forwardableExtras(extra, { owned: OWNED_FIELDS, provider: 'xAI' });
  warnings.push(...extraWarnings);
  const references = request.inputImages.map((image) => ({
    url: `data:${image.mediaType};base64,${image.bytes.toString('base64')}`,
    type: 'image_url',
  }));
  const body: Record<string, unknown> = {
    ...forwarded,
    model: upstreamModel,
    prompt: request.prompt,
    n: request.n,
    // Base64 keeps the image in the answer: no second request, no expiring link to fetch.
    response_format: 'b64_json',
    ...(request.params.aspect_ratio !== undefined ? { aspect_ratio: String(request.params.aspect_ratio) } : {}),
    // Deepshi spells tiers "1K"/"2K" like every model; xAI wants "1k"/"2k".
    ...(request.params.resolution !== undefined ? { resolution: String(request.params.resolution).toLowerCase() } : {}),
    // xAI takes one reference as `image` and several as `images`, never both.
    ...(references.length === 1 ? { image: references[0] } : {}),
    ...(references.length > 1 ? { images: references } : {}),
  };
  return { body, warnings, forwardedKeys: Object.keys(forwarded) };
}

function imageType(value: string | null | undefined): string {
  const type = value?.split(';')[0].trim().toLowerCase();
  return type?.startsWith('image/') ? type : 'image/jpeg';
}

/** Route option `max_response_bytes` (positive integer), else the shared default. */
