import type { Warning } from '../../domain/warnings.ts';
import { forwardableExtras } from '../shared/forwarded-extras.ts';
import { maxResponseBytes, timeoutsFromOptions, upstreamRequest } from '../shared/http.ts';
import { eachImageCall, type SingleImageOutcome } from '../shared/single-image-calls.ts';
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
import { finishFailure, geminiFailure, generateContentResponseSchema, isRefusal, promptBlocked, readUsage } from './gemini-api.ts';

/**
 * Google Gemini image models ("Nano Banana": gemini-3-pro-image-preview, gemini-3.1-flash-image-preview) through
 * `POST /v1beta/models/{model}:generateContent` (docs/providers.md, upstream wire contracts). Synchronous JSON, base64 `inlineData`
 * out, one image per call (Gemini has no `n`, so the pipeline fans out). Content refusals come back as HTTP 200
 * (prompt block or finishReason) and are turned into ProviderErrors here.
 *
 * Route options: `timeouts` ({connect_ms, first_byte_ms, total_ms}) and `max_response_bytes`.
 */
export const GEMINI_DEFAULT_BASE_URL = 'https://generativelanguage.googleapis.com';

/** Top-level request fields the adapter writes; a forwarded extra of the same name is dropped with a warning. */
const OWNED_FIELDS = ['contents'];
/** generationConfig fields the adapter writes; the caller's other generationConfig fields (temperature...) pass through. */
const OWNED_GENERATION_FIELDS = ['responseModalities', 'imageConfig', 'candidateCount'];

export class GeminiImageAdapter implements ImageAdapter {
  readonly provider = 'gemini';
  readonly capabilities: ImageAdapterCapabilities = {
    maxImagesPerCall: 1,
    supportsSeed: false,
    supportsPartialImages: false,
    supportsEdits: true,
    // The answer's mimeType is authoritative; PNG is what the models send in practice.
    nativeFormats: ['png'],
  };

  isConfigured(route: RouteTarget): boolean {
    return Boolean(route.credential);
  }

  /** The pipeline sends n = 1 (maxImagesPerCall); behind another route on failover n may be larger, and is split. */
  generate(request: NormalizedImageRequest, route: RouteTarget, context: ImageCallContext): Promise<ImageGenerationResult> {
    return eachImageCall(request, context, (call) => this.generateOne(call, route, context));
  }

  private async generateOne(request: NormalizedImageRequest, route: RouteTarget, context: ImageCallContext): Promise<SingleImageOutcome> {
    const { body, warnings, forwardedKeys } = buildRequestBody(request);
    const model = route.upstreamModel ?? request.model;
    const base = (route.baseUrl ?? GEMINI_DEFAULT_BASE_URL).replace(/\/+$/, '');
    const response = await upstreamRequest({
      method: 'POST',
      url: `${base}/v1beta/models/${encodeURIComponent(model)}:generateContent`,
      headers: { 'content-type': 'application/json', 'x-goog-api-key': route.credential ?? '' },
      body: JSON.stringify(body),
      signal: context.signal,
      timeouts: timeoutsFromOptions(route.options),
      maxBytes: maxResponseBytes(route.options),
      provider: 'Gemini',
      // generateContent is synchronous: once sent, Google may be generating (and billing) the image.
      sentMeansAccepted: true,
    });
    if (response.status !== 200) throw geminiFailure(response, forwardedKeys);

    const json = response.json();
    const parsed =
      json === undefined || json === null || typeof json !== 'object' ? undefined : generateContentResponseSchema.safeParse(json);
    if (!parsed?.success)
      throw new ProviderError('failed', 'Gemini sent an answer that is not a generateContent JSON object.', { accepted: true });
    const answer = parsed.data;
    const usage = readUsage(answer.usageMetadata);

    const blockReason = answer.promptFeedback?.blockReason;
    if (blockReason) throw promptBlocked(blockReason, answer.promptFeedback?.blockReasonMessage);

    const candidate = answer.candidates?.[0];
    const parts = candidate?.content?.parts ?? [];
    // Gemini 3 may send draft images as thought parts; only the non-thought image parts are the answer.
    const images: GeneratedImage[] = parts.flatMap((part) =>
      !part.thought && part.inlineData && part.inlineData.mimeType.startsWith('image/') && part.inlineData.data.length > 0
        ? [{ base64: part.inlineData.data, mediaType: part.inlineData.mimeType }]
        : [],
    );
    // A refusal finishReason wins over any image that came with it: flagged output is never delivered.
    if (images.length === 0 || isRefusal(candidate?.finishReason)) {
      const modelText = parts
        .filter((part) => !part.thought && part.text)
        .map((part) => part.text)
        .join(' ');
      throw finishFailure(candidate?.finishReason, candidate?.finishMessage, modelText);
    }
    if (images.length > 1) {
      warnings.push({ type: 'other', message: `Gemini returned ${images.length} images for one request; the first was kept.` });
    }
    // Text parts are the model's commentary ("Here is your image"), not a revised prompt: not returned.
    return { image: images[0], warnings, usage };
  }
}

/**
 * The generateContent body, every upstream field named here. Forwarded extras (safetySettings, systemInstruction,
 * generationConfig.temperature...) go in first; the fields we depend on are written after them.
 */
export function buildRequestBody(request: NormalizedImageRequest): {
  body: Record<string, unknown>;
  warnings: Warning[];
  forwardedKeys: string[];
} {
  const warnings: Warning[] = [];
  if (request.seed !== undefined)
    warnings.push({ type: 'unsupported', param: 'seed', message: 'Gemini image models take no seed; it was ignored.' });
  const { generationConfig: callerConfig, ...extra } = request.extra;
  const { fields: forwarded, warnings: extraWarnings } = forwardableExtras(extra, { owned: OWNED_FIELDS, provider: 'Gemini' });
  warnings.push(...extraWarnings);
  // The caller's generationConfig is merged into ours (the fields we own excepted) rather than replacing it.
  let callerGenerationConfig: Record<string, unknown> = {};
  if (isPlainObject(callerConfig)) {
    const nested = forwardableExtras(callerConfig, { owned: OWNED_GENERATION_FIELDS, provider: 'Gemini' });
    callerGenerationConfig = nested.fields;
    warnings.push(
      ...nested.warnings.map((warning) => ({
        ...warning,
        param: `generationConfig.${warning.param}`,
        message: warning.message.replace(`'${warning.param}'`, `'generationConfig.${warning.param}'`),
      })),
    );
  } else if (callerConfig !== undefined) {
    warnings.push({ type: 'other', param: 'generationConfig', message: "'generationConfig' must be an object; it was ignored." });
  }

  const imageConfig: Record<string, unknown> = {};
  if (request.params.aspect_ratio !== undefined) imageConfig.aspectRatio = String(request.params.aspect_ratio);
  // Gemini's tiers are "512", "1K", "2K", "4K"; the K is case-sensitive upstream and the catalog spells it that way.
  if (request.params.resolution !== undefined) imageConfig.imageSize = String(request.params.resolution);

  const body: Record<string, unknown> = {
    ...forwarded,
    contents: [
      {
        role: 'user',
        parts: [
          { text: request.prompt },
          ...request.inputImages.map((image) => ({ inlineData: { mimeType: image.mediaType, data: image.bytes.toString('base64') } })),
        ],
      },
    ],
    generationConfig: {
      ...callerGenerationConfig,
      // IMAGE only: with TEXT allowed the model may answer in prose instead of drawing.
      responseModalities: ['IMAGE'],
      imageConfig,
    },
  };
  return { body, warnings, forwardedKeys: [...Object.keys(forwarded), ...(isPlainObject(callerConfig) ? ['generationConfig'] : [])] };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Route option `max_response_bytes` (positive integer), else the shared default. */
