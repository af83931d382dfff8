import { addUsage } from '../../domain/usage.ts';
import type { Warning } from '../../domain/warnings.ts';
import { forwardableExtras } from '../shared/forwarded-extras.ts';
import { sanitize, type UpstreamRequest, type UpstreamResponse } from '../shared/http.ts';
import {
  SseDecoder,
  imagesFailure,
  isEventStream,
  isFormScalar,
  isUsableBaseUrl,
  mediaTypeOf,
  postImagesRequest,
  readApiError,
  readImagesResponse,
  readTokenUsage,
  type ImagesApiError,
} from '../shared/openai-images-wire.ts';
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
 * OpenAI Images API (`provider: openai`): gpt-image-1.5, gpt-image-2 and the other GPT image models.
 * Wire contract: docs/providers.md (upstream wire contracts). Generations are JSON to /v1/images/generations, edits multipart to
 * /v1/images/edits; both answer base64 only (never send `response_format` to GPT image models: it is a 400).
 *
 * Route: `credentials_env` (Bearer key), `base_url_env` (default https://api.openai.com; with or without `/v1`,
 * see imagesEndpoint), `options`: `timeouts`, `max_response_bytes`, `organization` / `project` (sent as the
 * OpenAI-Organization / OpenAI-Project headers).
 *
 * Streaming: with partial images asked for, each image is one upstream SSE call with `n: 1`, run in parallel.
 * OpenAI's stream events carry no image index, so what it does with `n > 1` while streaming is unspecified
 * (docs/providers.md); one image per stream keeps every partial attributable to its image.
 */

const PROVIDER = 'OpenAI';
const DEFAULT_BASE_URL = 'https://api.openai.com';

/** Fields this adapter writes itself; an extra with one of these names is dropped with a warning. */
const OWNED_FIELDS = [
  'model',
  'prompt',
  'n',
  'size',
  'quality',
  'background',
  'moderation',
  'output_format',
  'output_compression',
  'stream',
  'partial_images',
  'response_format',
  'image',
  'image[]',
] as const;

/** Catalog params folded into `size`, never sent under their own names. */
const SIZE_PARAMS = new Set(['image_size', 'width', 'height', 'aspect_ratio', 'resolution']);

export class OpenAIImageAdapter implements ImageAdapter {
  readonly provider = 'openai';
  readonly capabilities: ImageAdapterCapabilities = {
    // The API takes n up to 10; Deepshi's requests never ask for more than 4.
    maxImagesPerCall: 4,
    supportsSeed: false,
    supportsPartialImages: true,
    supportsEdits: true,
    nativeFormats: ['png', 'jpeg', 'webp'],
  };

  isConfigured(route: RouteTarget): boolean {
    return Boolean(route.credential) && (route.baseUrl === undefined || isUsableBaseUrl(route.baseUrl));
  }

  async generate(request: NormalizedImageRequest, route: RouteTarget, context: ImageCallContext): Promise<ImageGenerationResult> {
    if (request.partialImages > 0) return this.streamEach(request, route, context);
    const built = buildRequestBody(request, route, { n: request.n, partialImages: 0 });
    const response = await this.send(request, route, context, built.body, false);
    if (response.status !== 200) throw failure(request, response);
    const parsed = readImagesResponse(PROVIDER, response);
    const images = parsed.data.map((item): GeneratedImage => {
      // GPT image models answer base64 only; a URL would mean a different (dall-e) model behind the route.
      if (!item.b64_json) throw new ProviderError('failed', `${PROVIDER} sent an image without base64 data`, { accepted: true });
      return {
        base64: item.b64_json,
        mediaType: mediaTypeOf(item.b64_json, parsed.output_format ?? request.outputFormat),
        compressed: compressedBy(request),
      };
    });
    const usage = readTokenUsage(parsed.usage);
    if (images.length < request.n) {
      // Deliver what came, then report the shortfall as a failure after acceptance (the delivered ones are charged).
      // The one call's usage is its whole bill, so it goes with the failure (recorded as the upstream's cost).
      for (const [index, image] of images.entries()) context.onImage?.(image, index);
      throw Object.assign(new ProviderError('failed', `${PROVIDER} returned ${images.length} of ${request.n} images`, { accepted: true }), {
        usage,
      });
    }
    return { images: images.slice(0, request.n), warnings: built.warnings, usage };
  }

  /** One SSE call per image, in parallel; partial and final images are passed on as they arrive. */
  private async streamEach(request: NormalizedImageRequest, route: RouteTarget, context: ImageCallContext): Promise<ImageGenerationResult> {
    const built = buildRequestBody(request, route, { n: 1, partialImages: request.partialImages });
    const settled = await Promise.allSettled(
      Array.from({ length: request.n }, (_, imageIndex) => this.streamOne(request, route, context, built.body, imageIndex)),
    );
    const done = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const failures = settled.flatMap((result) => (result.status === 'rejected' ? [result.reason as unknown] : []));
    if (failures.length > 0) {
      const accepted = failures.find((error) => error instanceof ProviderError && error.accepted) ?? failures[0];
      if (done.length === 0) throw accepted;
      // Some images were delivered: the batch must not be repeated, whatever failed.
      const kind = accepted instanceof ProviderError && accepted.kind === 'refused' ? 'refused' : 'failed';
      throw new ProviderError(kind, accepted instanceof Error ? accepted.message : 'an image of the batch failed', {
        accepted: true,
        cause: accepted,
      });
    }
    return {
      images: done.map((outcome) => outcome.image),
      warnings: built.warnings,
      usage: addUsage(done.map((outcome) => outcome.usage)),
      imagesDelivered: true,
    };
  }

  private async streamOne(
    request: NormalizedImageRequest,
    route: RouteTarget,
    context: ImageCallContext,
    body: Record<string, unknown>,
    imageIndex: number,
  ): Promise<{ image: GeneratedImage; usage: UpstreamUsage | undefined }> {
    let final: { image: GeneratedImage; usage: UpstreamUsage | undefined } | undefined;
    let partials = 0;
    const decoder = new SseDecoder(({ event, data }) => {
      if (data === '[DONE]') return;
      let payload: Record<string, unknown>;
      try {
        payload = JSON.parse(data);
      } catch {
        throw new ProviderError('failed', `${PROVIDER} sent a malformed stream event`, { accepted: true });
      }
      const type = typeof payload.type === 'string' ? payload.type : (event ?? '');
      if (event === 'error' || type === 'error' || payload.error)
        throw streamFailure(request, readApiError({ error: payload.error ?? payload }));
      const base64 = typeof payload.b64_json === 'string' ? payload.b64_json : undefined;
      if (type.endsWith('.partial_image') && base64) {
        const index = typeof payload.partial_image_index === 'number' ? payload.partial_image_index : partials;
        partials++;
        context.onPartialImage?.({ base64, partialImageIndex: index, imageIndex });
      } else if (type.endsWith('.completed') && base64 && !final) {
        const format = typeof payload.output_format === 'string' ? payload.output_format : request.outputFormat;
        final = {
          image: { base64, mediaType: mediaTypeOf(base64, format), compressed: compressedBy(request) },
          usage: readTokenUsage(payload.usage),
        };
        context.onImage?.(final.image, imageIndex);
      }
    });
    const response = await this.send(request, route, context, body, true, (chunk, head) => {
      if (head.status === 200 && isEventStream(head.headers)) decoder.push(chunk);
    });
    if (response.status !== 200) throw failure(request, response);
    if (isEventStream(response.headers)) {
      decoder.end();
    } else {
      // A server that ignored `stream: true` and answered JSON: take its image as the final one.
      const parsed = readImagesResponse(PROVIDER, response);
      const base64 = parsed.data[0].b64_json;
      if (!base64) throw new ProviderError('failed', `${PROVIDER} sent an image without base64 data`, { accepted: true });
      final = {
        image: { base64, mediaType: mediaTypeOf(base64, parsed.output_format ?? request.outputFormat), compressed: compressedBy(request) },
        usage: readTokenUsage(parsed.usage),
      };
      context.onImage?.(final.image, imageIndex);
    }
    if (!final) throw new ProviderError('failed', `${PROVIDER}'s stream ended before the image was completed`, { accepted: true });
    return final;
  }

  private send(
    request: NormalizedImageRequest,
    route: RouteTarget,
    context: ImageCallContext,
    body: Record<string, unknown>,
    streaming: boolean,
    onChunk?: UpstreamRequest['onChunk'],
  ): Promise<UpstreamResponse> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${route.credential ?? ''}`,
      accept: streaming ? 'text/event-stream' : 'application/json',
    };
    if (typeof route.options.organization === 'string') headers['openai-organization'] = route.options.organization;
    if (typeof route.options.project === 'string') headers['openai-project'] = route.options.project;
    return postImagesRequest({
      baseUrl: route.baseUrl ?? DEFAULT_BASE_URL,
      headers,
      body,
      inputImages: request.inputImages,
      routeOptions: route.options,
      signal: context.signal,
      provider: PROVIDER,
      onChunk,
    });
  }
}

/**
 * The upstream request, every field named. Extras go first so the fields written after them always win.
 * For edits the same fields travel as multipart parts, without `moderation` (generations only) and without
 * non-scalar extras.
 */
export function buildRequestBody(
  request: NormalizedImageRequest,
  route: RouteTarget,
  call: { n: number; partialImages: number },
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
        message: `'${name}' is not a text value, so it cannot be sent to ${PROVIDER}'s edit endpoint; ignored.`,
      });
  }
  if (request.seed !== undefined) {
    warnings.push({ type: 'unsupported', param: 'seed', message: `${PROVIDER}'s Images API has no seed; 'seed' was ignored.` });
  }
  // Catalog params OpenAI knows under their own names (an operator's catalog may declare e.g. output_compression).
  const otherParams: Record<string, string | number | boolean> = {};
  for (const [name, value] of Object.entries(request.params)) {
    if (!SIZE_PARAMS.has(name) && !['quality', 'background', 'moderation'].includes(name)) otherParams[name] = value;
  }
  const moderation = request.params.moderation;
  if (edit && moderation !== undefined && moderation !== 'auto') {
    warnings.push({
      type: 'unsupported',
      param: 'moderation',
      message: `${PROVIDER}'s edit endpoint has no 'moderation' setting; ignored.`,
    });
  }
  const body: Record<string, unknown> = {
    ...extras,
    ...otherParams,
    // `auto` stays `auto`: the upstream picks a standard size and the response reports it.
    size: typeof request.params.image_size === 'string' ? request.params.image_size : `${request.width}x${request.height}`,
    quality: request.params.quality,
    background: request.params.background,
    moderation: edit ? undefined : moderation,
    // Asked for upstream, so OpenAI encodes it natively and nothing is transcoded.
    output_format: request.outputFormat,
    // Set only for jpeg/webp output (catalog/image-request.ts); OpenAI applies it when it encodes.
    output_compression: request.outputCompression,
    model: route.upstreamModel ?? request.model,
    prompt: request.prompt,
    n: call.n,
    stream: call.partialImages > 0 ? true : undefined,
    partial_images: call.partialImages > 0 ? call.partialImages : undefined,
    // Never `response_format`: GPT image models reject it and always answer base64.
  };
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
  return { body, warnings };
}

/** OpenAI encodes the output_format it was asked for with the output_compression it was sent. */
function compressedBy(request: NormalizedImageRequest): boolean {
  return request.outputCompression !== undefined && request.outputFormat !== undefined;
}

function failure(request: NormalizedImageRequest, response: UpstreamResponse): ProviderError {
  return imagesFailure(PROVIDER, response, { paramNames: paramNames(request), refusalMessage: (error) => refusalMessage(request, error) });
}

/** An `error` event inside an accepted stream: a refusal stays a refusal (not charged), anything else failed. */
function streamFailure(request: NormalizedImageRequest, error: ImagesApiError): ProviderError {
  if ((error.code !== undefined && ['moderation_blocked', 'content_policy_violation'].includes(error.code)) || error.moderationStage) {
    return new ProviderError('refused', refusalMessage(request, error), { accepted: true });
  }
  return new ProviderError('failed', `${PROVIDER} failed while streaming: ${sanitize(error.message ?? 'unknown error')}`, {
    accepted: true,
  });
}

function paramNames(request: NormalizedImageRequest): Record<string, string> {
  return {
    size: 'image_size' in request.params ? 'image_size' : 'size',
    image: 'image',
    'image[]': 'image',
  };
}

function refusalMessage(request: NormalizedImageRequest, error: ImagesApiError): string {
  const edit = request.inputImages.length > 0;
  const what =
    error.moderationStage === 'output'
      ? 'The generated image'
      : error.moderationStage === 'input'
        ? edit
          ? 'The prompt or the input images'
          : 'The prompt'
        : edit
          ? 'The prompt, the input images or the generated image'
          : 'The prompt or the generated image';
  const categories = error.categories.length > 0 ? ` (${error.categories.slice(0, 8).join(', ')})` : '';
  return sanitize(`${what} was rejected by OpenAI's safety system${categories}. You were not charged.`);
}
