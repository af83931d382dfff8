import type { Warning } from '../../domain/warnings.ts';
import { probeImage } from '../../images/probe.ts';
import type { Base64Text } from '../../images/base64.ts';
import { forwardableExtras } from '../shared/forwarded-extras.ts';
import { maxResponseBytes, originOf, sanitize, type UpstreamResponse } from '../shared/http.ts';
import {
  imagesFailure,
  isFormScalar,
  isUsableBaseUrl,
  mediaTypeOf,
  postImagesRequest,
  readImagesResponse,
  readTokenUsage,
} from '../shared/openai-images-wire.ts';
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
  type UpstreamUsage,
} from '../types.ts';

/**
 * Any server speaking OpenAI's `/v1/images/generations` and `/v1/images/edits` (`provider: openai-compatible`):
 * self-hosted GPU servers, other gateways (another Deepshi included). This is how operators serve
 * deepshi-banana-pro and deepshi-image-1.
 *
 * Route: `base_url_env` is REQUIRED (there is no public default; with or without `/v1`, see imagesEndpoint),
 * `credentials_env` optional (sent as `Authorization: Bearer`), `upstream_model` (default: the catalog id),
 * `options`: `timeouts`, `max_response_bytes`, `download_hosts` (hosts the server's result URLs may point to,
 * e.g. its CDN: `["cdn.example.com", "*.example.net"]`; the base URL's own origin is always trusted).
 *
 * Request: OpenAI's fields plus the model's catalog params under their own names (width, height, aspect_ratio,
 * resolution, seed, output_format...), the resolved size as `size` (the one sizing field every such server
 * reads), and `response_format: b64_json`. Response: `b64_json` or `url` items, `revised_prompt`, optional
 * `usage` (OpenAI token fields) and an optional cost (see readUpstreamCost).
 */

const PROVIDER = 'the upstream image server';

const OWNED_FIELDS = ['model', 'prompt', 'n', 'size', 'response_format', 'stream', 'partial_images', 'image', 'image[]'] as const;

export class OpenAICompatibleImageAdapter implements ImageAdapter {
  readonly provider = 'openai-compatible';
  readonly capabilities: ImageAdapterCapabilities = {
    maxImagesPerCall: 4,
    supportsSeed: true,
    supportsPartialImages: false,
    supportsEdits: true,
    // Unknown per server: the format is asked for with `output_format`, and what comes back is sniffed.
    nativeFormats: ['png'],
  };

  isConfigured(route: RouteTarget): boolean {
    return isUsableBaseUrl(route.baseUrl);
  }

  async generate(request: NormalizedImageRequest, route: RouteTarget, context: ImageCallContext): Promise<ImageGenerationResult> {
    const { body, warnings } = buildRequestBody(request, route);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (route.credential) headers.authorization = `Bearer ${route.credential}`;
    const response = await postImagesRequest({
      baseUrl: route.baseUrl!,
      headers,
      body,
      inputImages: request.inputImages,
      routeOptions: route.options,
      signal: context.signal,
      provider: PROVIDER,
    });
    if (response.status !== 200) throw failure(response);
    const parsed = readImagesResponse(PROVIDER, response);
    const images: GeneratedImage[] = [];
    for (const item of parsed.data.slice(0, request.n)) {
      const image = await this.imageOf(item, parsed.output_format ?? request.outputFormat, route, context);
      images.push(item.revised_prompt ? { ...image, revisedPrompt: item.revised_prompt } : image);
    }
    const usage = readUsage(parsed.usage);
    if (images.length < request.n) {
      for (const [index, image] of images.entries()) context.onImage?.(image, index);
      throw new ProviderError('failed', `${PROVIDER} returned ${images.length} of ${request.n} images`, { accepted: true });
    }
    return { images, warnings, usage };
  }

  /** Base64 as sent; a `data:` URL unwrapped; any other URL downloaded at once, without credentials. */
  private async imageOf(
    item: { b64_json?: Base64Text | null; url?: string | null },
    declaredFormat: string | undefined,
    route: RouteTarget,
    context: ImageCallContext,
  ): Promise<GeneratedImage> {
    if (item.b64_json && item.b64_json.length > 0) return { base64: item.b64_json, mediaType: mediaTypeOf(item.b64_json, declaredFormat) };
    if (!item.url) throw new ProviderError('failed', `${PROVIDER} sent an image item with neither b64_json nor url`, { accepted: true });
    const dataUrl = /^data:(image\/[a-z0-9.+-]+);base64,/i.exec(item.url);
    if (dataUrl) {
      const base64 = item.url.slice(dataUrl[0].length);
      return { base64, mediaType: mediaTypeOf(base64, dataUrl[1].slice('image/'.length)) };
    }
    const downloaded = await safeDownload(
      item.url,
      {
        allowedHosts: stringList(route.options.download_hosts),
        trustedOrigins: originOf(route.baseUrl),
        maxBytes: maxResponseBytes(route.options),
        provider: PROVIDER,
      },
      context.signal,
    );
    const probe = probeImage(downloaded.bytes);
    return {
      base64: downloaded.bytes.toString('base64'),
      mediaType: probe ? `image/${probe.format}` : (downloaded.contentType?.split(';')[0].trim() ?? 'image/png'),
    };
  }
}

/**
 * The upstream request, every field named. Extras first, then the model's catalog params under their own names,
 * then the fields this adapter owns, so neither extras nor params can change the model, prompt, count or format.
 * For edits the same fields travel as multipart parts (non-scalar extras are dropped with a warning).
 */
export function buildRequestBody(
  request: NormalizedImageRequest,
  route: RouteTarget,
): { body: Record<string, unknown>; warnings: Warning[] } {
  const edit = request.inputImages.length > 0;
  const forwarded = forwardableExtras(request.extra, { owned: OWNED_FIELDS, provider: PROVIDER });
  const warnings = [...forwarded.warnings];
  const extras: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(forwarded.fields)) {
    if (!edit || isFormScalar(value)) extras[name] = value;
    else
      warnings.push({
        type: 'unsupported',
        param: name,
        message: `'${name}' is not a text value, so it cannot be sent with an edit; ignored.`,
      });
  }
  if (request.partialImages > 0) {
    warnings.push({
      type: 'unsupported',
      param: 'partial_images',
      message: 'This model does not stream partial images; only the final image is sent.',
    });
  }
  const body: Record<string, unknown> = {
    ...extras,
    // width, height, aspect_ratio, resolution, quality, image_size...: whatever the catalog declares for the model.
    ...request.params,
    size: `${request.width}x${request.height}`,
    seed: request.seed,
    output_format: request.outputFormat,
    model: route.upstreamModel ?? request.model,
    prompt: request.prompt,
    n: request.n,
    // Base64 is preferred (nothing to download); URL answers are still accepted.
    response_format: 'b64_json',
  };
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
  return { body, warnings };
}

function failure(response: UpstreamResponse): ProviderError {
  return imagesFailure(PROVIDER, response, {
    refusalMessage: (error) =>
      sanitize(
        `The image server rejected the request under its content policy${error.message ? `: ${error.message}` : ''}. You were not charged.`,
      ),
  });
}

/** Token usage (OpenAI's fields) plus the upstream's own cost when it states one. */
function readUsage(raw: unknown): UpstreamUsage | undefined {
  const tokens = readTokenUsage(raw);
  const costNanos = readUpstreamCost(raw);
  if (costNanos === undefined) return tokens;
  return { ...tokens, costNanos };
}

/** Above this an upstream's per-call cost is not believed (the hold caps the charge anyway). */
const MAX_BELIEVED_COST_USD = 1_000;

/**
 * Rule for a cost the upstream reports, used only by catalog entries with `settle: upstream_cost`: `usage.cost` as
 * a USD number (OpenRouter style) or `usage.cost.total_cost` as a USD number (Deepshi's own response, so one
 * Deepshi can front another). Anything not a finite number in [0, 1000] is ignored.
 */
export function readUpstreamCost(raw: unknown): bigint | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const cost = (raw as { cost?: unknown }).cost;
  const usd =
    typeof cost === 'number'
      ? cost
      : cost !== null && typeof cost === 'object' && typeof (cost as { total_cost?: unknown }).total_cost === 'number'
        ? (cost as { total_cost: number }).total_cost
        : undefined;
  if (usd === undefined || !Number.isFinite(usd) || usd < 0 || usd > MAX_BELIEVED_COST_USD) return undefined;
  return BigInt(Math.round(usd * 1e9));
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}
