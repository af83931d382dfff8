import type { ImageCatalogModel } from '../catalog/catalog.ts';
import { normalizeImageRequest } from '../catalog/image-request.ts';
import { quoteImageRequest, settleImageCost } from '../billing/pricing.ts';
import type { Caller } from '../domain/caller.ts';
import { GatewayError, internalError, invalidRequest } from '../domain/errors.ts';
import type { InputImage, NormalizedImageRequest } from '../domain/requests.ts';
import { sumCompleteUsage, type UpstreamUsage } from '../domain/usage.ts';
import type { Warning } from '../domain/warnings.ts';
import { transcode } from '../images/encode.ts';
import { decodeBase64Text } from '../images/base64.ts';
import { assertDecodable } from '../images/decode-check.ts';
import { looksComplete, probeBase64 } from '../images/probe.ts';
import type { ResolvedRoute } from '../providers/registry.ts';
import { ProviderError, type GeneratedImage, type ImageGenerationResult } from '../providers/types.ts';
import { BilledService } from './billed-service.ts';
import type { BilledTicket } from './billed-work.ts';
import { wrongEndpoint } from './model-access.ts';
import { toGatewayError } from './upstream-errors.ts';

export { isAllowed, type Caller } from './model-access.ts';
export type {
  DeliveredImage,
  EditUploadLimits,
  ExecuteHooks,
  ImageOutcome,
  ImageServiceDeps,
  PreparedImageRequest,
  UpstreamHandle,
  UpstreamImageLimits,
} from './image-work.ts';
export { DEFAULT_UPSTREAM_IMAGE_LIMITS, fingerprintImageRequest } from './image-work.ts';
import {
  DEFAULT_UPSTREAM_IMAGE_LIMITS,
  exceedsLimits,
  imagesPerCall,
  imageTicket,
  type DeliveredImage,
  type EditUploadLimits,
  type ExecuteHooks,
  type ImageOutcome,
  type ImageServiceDeps,
  type PreparedImageRequest,
  type UpstreamHandle,
} from './image-work.ts';

/**
 * The image request path after authentication: model → permissions → validation → price, then the billed path of
 * the runner (billed-work.ts: admission → hold → upstream calls with failover → settle or release). HTTP framing (JSON
 * or SSE) is the caller's business; money is the runner's.
 */
export class ImageGenerationService extends BilledService<PreparedImageRequest, ExecuteHooks, ImageOutcome, ImageServiceDeps> {
  protected ticket(prepared: PreparedImageRequest): BilledTicket {
    return imageTicket(prepared);
  }

  /**
   * Resolves an image model for this caller: 400 model_not_found if unknown or unservable, 403 if the key may not
   * use it, 400 (param `model`) for a text model.
   */
  resolveModel(caller: Caller, modelId: unknown): { model: ImageCatalogModel; routes: ResolvedRoute[] } {
    const model = this.deps.models.resolve(caller, modelId);
    if (model.kind !== 'image') throw wrongEndpoint(model, 'the image endpoints');
    return { model, routes: this.deps.registry.availability(model).routes };
  }

  prepare(
    caller: Caller,
    body: Record<string, unknown>,
    options: { endpoint: PreparedImageRequest['endpoint']; coerceStrings?: boolean; inputImages?: InputImage[] },
  ): PreparedImageRequest {
    const { model, routes } = this.resolveModel(caller, body.model);
    const envelope = normalizeImageRequest(body, model, { coerceStrings: options.coerceStrings, inputImages: options.inputImages });
    const quote = quoteImageRequest(model, envelope.request);
    return { ...envelope, model, routes, quote, endpoint: options.endpoint };
  }

  /**
   * An edit's form (every field a string) and its uploaded images: the model must edit, take that many reference
   * images and have a route that edits; then the normal validation and price, and a bounded decode of every image so
   * a truncated or corrupt file is a 400 here, before the hold, not an upstream failure later.
   */
  async prepareEdit(
    caller: Caller,
    fields: Record<string, unknown>,
    images: InputImage[],
    limits: EditUploadLimits,
  ): Promise<PreparedImageRequest> {
    const { model } = this.resolveModel(caller, fields.model);
    if (!model.edit.supported) {
      throw invalidRequest(
        `${model.id} does not edit images. GET /v1/models lists each model's \`edit\` block; pick one with edit.supported: true.`,
        'model',
        'invalid_value',
      );
    }
    if (images.length === 0) {
      throw new GatewayError("Missing required parameter: 'image'. Send at least one PNG, JPEG or WebP file under image[] (or image).", {
        status: 400,
        type: 'invalid_request_error',
        code: 'missing_required_parameter',
        param: 'image',
      });
    }
    if (images.length > model.edit.max_images) {
      throw invalidRequest(
        `${model.id} takes at most ${model.edit.max_images} reference image${model.edit.max_images === 1 ? '' : 's'}; got ${images.length}.`,
        'image',
        'too_many_images',
      );
    }
    const all = this.prepare(caller, fields, { endpoint: 'images.edits', coerceStrings: true, inputImages: images });
    const routes = all.routes.filter((route) => route.adapter.capabilities.supportsEdits);
    if (routes.length === 0) {
      throw invalidRequest(
        `Edits with ${model.id} are not available on this server (its configured upstream does not edit).`,
        'model',
        'invalid_value',
      );
    }
    await assertDecodable(images, limits.maxPixels);
    return { ...all, routes };
  }

  /**
   * Runs a reserved request to its end and resolves the hold exactly once: settled for the images delivered,
   * released when none were. Throws a GatewayError (after releasing) when nothing can be delivered.
   */
  async execute(prepared: PreparedImageRequest, requestId: string, hooks: ExecuteHooks): Promise<ImageOutcome> {
    const { metrics } = this.deps;
    const started = performance.now();
    try {
      const outcome = await this.deps.runner.run(
        requestId,
        hooks.signal,
        (signal) => this.generate(prepared, requestId, hooks, signal),
        hooks.savedResponse,
      );
      metrics.imageDelivered(
        prepared.model.id,
        prepared.endpoint,
        outcome.partialFailure !== undefined,
        outcome.images.length,
        outcome.cost,
        (performance.now() - started) / 1000,
      );
      return outcome;
    } catch (error) {
      const refused = error instanceof GatewayError && error.code === 'content_policy_violation';
      metrics.imageRequest(prepared.model.id, prepared.endpoint, refused ? 'refused' : 'failed');
      throw error;
    }
  }

  private async generate(prepared: PreparedImageRequest, requestId: string, hooks: ExecuteHooks, signal: AbortSignal) {
    const delivered: DeliveredImage[] = [];
    const warnings = [...prepared.warnings];
    let usage: UpstreamUsage | undefined;
    let failure: unknown;
    // Post-processing is chained so images are delivered in order even when transcoding takes a while.
    let chain: Promise<void> = Promise.resolve();
    let uncompressed = 0;
    const accept = (image: GeneratedImage, route: ResolvedRoute) => {
      chain = chain.then(async () => {
        const { ready, compressed } = await this.finishImage(image, prepared, delivered.length, route, requestId);
        if (!compressed) uncompressed++;
        delivered.push(ready);
        await hooks.onImage?.(ready);
      });
      return chain;
    };

    try {
      const onPartialImage = hooks.onPartialImage && this.partialImageFilter(prepared, requestId, hooks.onPartialImage);
      const result = await this.generateAll(
        prepared,
        signal,
        onPartialImage,
        (image, route) => void accept(image, route).catch(() => {}),
        hooks,
      );
      usage = result.usage;
      warnings.push(...result.warnings);
      await chain;
    } catch (error) {
      failure = error;
      const partial = error as { usage?: UpstreamUsage; warnings?: Warning[] };
      usage = partial.usage;
      warnings.push(...(partial.warnings ?? []));
      await chain.catch((chainError) => (failure ??= chainError));
    }

    // Nothing delivered: the runner releases the hold and maps the failure.
    if (delivered.length === 0) throw failure ?? internalError();
    if (prepared.request.outputCompression !== undefined && uncompressed > 0) {
      warnings.push({
        type: 'unsupported',
        param: 'output_compression',
        message: `${prepared.model.id} encoded ${uncompressed === delivered.length ? 'the images' : `${uncompressed} of the images`} itself; 'output_compression' was not applied to ${uncompressed === 1 ? 'it' : 'them'}.`,
      });
    }
    if (failure) {
      warnings.push({
        type: 'other',
        message: `Only ${delivered.length} of ${prepared.request.n} images could be generated; you are charged for ${delivered.length}.`,
      });
      this.deps.logger.warn({ requestId, err: failure, delivered: delivered.length }, 'partial generation');
    }
    const { cost, upstreamCost } = settleImageCost(prepared.model, prepared.quote, delivered.length, usage);
    const partialFailure = failure ? toGatewayError(failure, signal, hooks.signal) : undefined;
    const outcome: ImageOutcome = { images: delivered, cost, usage, warnings, partialFailure };
    const detail = { basis: prepared.quote.basis, size: `${delivered[0].width}x${delivered[0].height}` };
    return { value: outcome, settlement: { cost, upstreamCost, images: delivered.length, detail } };
  }

  /**
   * Fans `n` out into calls of at most the adapter's images-per-call, run in parallel, each with the runner's retries
   * and failover (nothing generated or billed twice). Resolves with the calls' usage summed, or throws the first
   * failure once every call has ended (images already delivered through onImage are kept by the caller).
   */
  private async generateAll(
    prepared: PreparedImageRequest,
    signal: AbortSignal,
    onPartialImage: ExecuteHooks['onPartialImage'],
    onImage: (image: GeneratedImage, route: ResolvedRoute) => void,
    upstream: Pick<ExecuteHooks, 'onAccepted' | 'resume'> = {},
  ): Promise<{ usage: UpstreamUsage | undefined; warnings: Warning[] }> {
    const { request } = prepared;
    const perCall = imagesPerCall(prepared);
    const calls: NormalizedImageRequest[] = [];
    for (let offset = 0; offset < request.n; offset += perCall) {
      const n = Math.min(perCall, request.n - offset);
      // Each call gets its own seed so a fanned-out batch differs image to image, yet stays reproducible.
      calls.push({ ...request, n, seed: request.seed === undefined ? undefined : (request.seed + offset) % 2 ** 32 });
    }
    const results = await Promise.allSettled(
      calls.map((call) =>
        upstream.resume
          ? this.resumeCall(prepared, call, upstream.resume, signal, onImage)
          : this.deps.runner.withFailover(prepared.routes, signal, async (route): Promise<ImageGenerationResult> => {
              const onAccepted = upstream.onAccepted;
              const position = prepared.routes.indexOf(route);
              const result = await route.adapter.generate(call, route.target, {
                signal,
                onPartialImage,
                onImage: (image) => onImage(image, route),
                ...(onAccepted ? { onAccepted: (handle: Record<string, unknown>) => onAccepted({ route: position, handle }) } : {}),
              });
              // Adapters that do not stream images report them only in the result.
              if (result.images.length > 0 && !result.imagesDelivered) for (const image of result.images) onImage(image, route);
              return result;
            }),
      ),
    );
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    const succeeded = results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const warnings = succeeded.flatMap((result) => result.warnings);
    // The delivered calls' bills, plus a failed call's when it carries one (an answer with fewer images than asked).
    const failedUsage = results.flatMap((result) => {
      const carried = result.status === 'rejected' ? (result.reason as { usage?: UpstreamUsage } | undefined)?.usage : undefined;
      return carried ? [carried] : [];
    });
    const usage = sumCompleteUsage([...succeeded.map((result) => result.usage), ...failedUsage]);
    if (failed) throw Object.assign(failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason)), { usage, warnings });
    return { usage, warnings };
  }

  /** Polls an accepted call to its end through its adapter's resume (no failover: the work is the upstream's already). */
  private async resumeCall(
    prepared: PreparedImageRequest,
    call: NormalizedImageRequest,
    accepted: UpstreamHandle,
    signal: AbortSignal,
    onImage: (image: GeneratedImage, route: ResolvedRoute) => void,
  ): Promise<ImageGenerationResult> {
    const route = prepared.routes[accepted.route];
    if (!route?.adapter.resume) throw new ProviderError('failed', 'the upstream call cannot be resumed on this server', { accepted: true });
    const result = await route.adapter.resume(accepted.handle, call, route.target, { signal, onImage: (image) => onImage(image, route) });
    if (result.images.length > 0 && !result.imagesDelivered) for (const image of result.images) onImage(image, route);
    this.deps.metrics.upstreamCall(route.adapter.provider, 'ok');
    return result;
  }

  /**
   * Before anything else touches an upstream image (transcoding, probing for `size`, the response), its header's
   * dimensions are checked against the limits: a PNG claiming 100000x100000 would otherwise be decoded (memory) or
   * delivered and billed as that size. Over the limit: 502 upstream_error, logged at warn with the route.
   */
  private async finishImage(
    image: GeneratedImage,
    prepared: PreparedImageRequest,
    index: number,
    route: ResolvedRoute,
    requestId: string,
  ): Promise<{ ready: DeliveredImage; compressed: boolean }> {
    let { base64, mediaType } = image;
    // Whether the caller's output_compression is in these bytes: applied by the adapter, or by the transcode below.
    let compressed = image.compressed === true;
    const limits = this.deps.upstreamImageLimits ?? DEFAULT_UPSTREAM_IMAGE_LIMITS;
    const declared = probeBase64(base64);
    if (declared && exceedsLimits(declared, limits)) {
      this.deps.logger.warn(
        {
          requestId,
          model: prepared.model.id,
          provider: route.adapter.provider,
          upstreamModel: route.target.upstreamModel,
          width: declared.width,
          height: declared.height,
          limits,
        },
        'upstream image over the size limit; not delivered',
      );
      throw new ProviderError(
        'failed',
        `The model returned an image of ${declared.width}x${declared.height} pixels, over this server's limit.`,
        { accepted: true },
      );
    }
    const wanted = prepared.request.outputFormat;
    if (wanted && mediaType !== `image/${wanted}`) {
      try {
        base64 = (await transcode(decodeBase64Text(base64), wanted, limits.maxPixels, prepared.request.outputCompression)).toString(
          'base64',
        );
        compressed = true;
      } catch (error) {
        this.deps.logger.warn(
          { requestId, model: prepared.model.id, provider: route.adapter.provider, err: error },
          'upstream image could not be converted',
        );
        throw new ProviderError('failed', `The model returned an image that could not be converted to ${wanted}.`, {
          accepted: true,
          cause: error,
        });
      }
      mediaType = `image/${wanted}`;
    }
    // Validate what the upstream sent: it must be an image we can measure. `size` is read from these bytes.
    const probe = probeBase64(base64);
    if (!probe) throw new ProviderError('failed', 'The model returned data that is not a PNG, JPEG or WebP image.', { accepted: true });
    if (!looksComplete(base64, probe.format)) {
      this.deps.logger.warn(
        { requestId, model: prepared.model.id, provider: route.adapter.provider },
        'upstream image is truncated; not delivered',
      );
      throw new ProviderError('failed', 'The model returned a truncated image.', { accepted: true });
    }
    if (exceedsLimits(probe, limits))
      throw new ProviderError('failed', `The model returned an image of ${probe.width}x${probe.height} pixels, over this server's limit.`, {
        accepted: true,
      });
    return {
      ready: {
        base64,
        mediaType: `image/${probe.format}`,
        width: probe.width,
        height: probe.height,
        revisedPrompt: image.revisedPrompt,
        index,
      },
      compressed,
    };
  }

  /** Partial images go to the caller as they are, so only those within the limits do (the others are dropped, with a warning logged). */
  private partialImageFilter(
    prepared: PreparedImageRequest,
    requestId: string,
    forward: NonNullable<ExecuteHooks['onPartialImage']>,
  ): NonNullable<ExecuteHooks['onPartialImage']> {
    const limits = this.deps.upstreamImageLimits ?? DEFAULT_UPSTREAM_IMAGE_LIMITS;
    return (partial) => {
      const probe = probeBase64(partial.base64);
      if (probe && !exceedsLimits(probe, limits)) return forward(partial);
      this.deps.logger.warn(
        { requestId, model: prepared.model.id, width: probe?.width, height: probe?.height },
        'upstream partial image unreadable or over the size limit; not forwarded',
      );
    };
  }
}
