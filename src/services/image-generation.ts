import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Catalog, ImageCatalogModel } from '../catalog/catalog.ts';
import { normalizeImageRequest, type ImageRequestEnvelope } from '../catalog/image-request.ts';
import { quoteImageRequest, settleImageCost, type PriceQuote } from '../billing/pricing.ts';
import {
  GatewayError, contentPolicyViolation, internalError, invalidRequest, rateLimited, upstreamFailure,
} from '../domain/errors.ts';
import type { Nanos } from '../domain/money.ts';
import { canonicalJson } from '../domain/canonical-json.ts';
import { sleep } from '../domain/sleep.ts';
import type { Warning } from '../domain/warnings.ts';
import { transcode } from '../images/encode.ts';
import { decodeBase64Text, type Base64Text } from '../images/base64.ts';
import { probeBase64 } from '../images/probe.ts';
import type { ProviderRegistry, ResolvedRoute } from '../providers/registry.ts';
import {
  ProviderError, type GeneratedImage, type ImageGenerationResult, type InputImage, type NormalizedImageRequest, type PartialImage, type UpstreamUsage,
} from '../providers/types.ts';
import type { Admission, RequestLimiter } from '../limits/limiter.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Store } from '../store/types.ts';
import type { IdempotencyService } from './idempotency.ts';
import { HeldWork } from './held-work.ts';
import { ModelAccess, wrongEndpoint, type Caller } from './model-access.ts';

export { isAllowed, type Caller } from './model-access.ts';

export interface PreparedImageRequest extends ImageRequestEnvelope {
  model: ImageCatalogModel;
  routes: ResolvedRoute[];
  quote: PriceQuote;
  endpoint: 'images.generations' | 'images.edits';
}

export interface DeliveredImage {
  base64: Base64Text;
  mediaType: string;
  width: number;
  height: number;
  revisedPrompt?: string;
  index: number;
}

export interface ImageOutcome {
  images: DeliveredImage[];
  cost: Nanos;
  usage: UpstreamUsage | undefined;
  warnings: Warning[];
  /** Set when fewer images than asked were delivered: why the rest failed (the delivered ones are charged). */
  partialFailure?: GatewayError;
}

export interface ExecuteHooks {
  signal: AbortSignal;
  onPartialImage?: (partial: PartialImage) => void;
  /** Each finished image, post-processed, in delivery order (streaming sends it at once). */
  onImage?: (image: DeliveredImage) => void;
}

/**
 * The image request path after authentication: model → permissions → validation → price → hold →
 * upstream → settle or release. HTTP framing (JSON or SSE) is the caller's business; money is this one's.
 */
export class ImageGenerationService {
  private readonly models: ModelAccess;
  private readonly held: HeldWork;

  constructor(
    private readonly deps: {
      catalog: Catalog;
      registry: ProviderRegistry;
      store: Store;
      logger: Logger;
      generationTimeoutMs: number;
      /** After the deadline, before the sweeper may release a hold whose instance went away. */
      holdGraceMs: number;
      limiter: RequestLimiter;
      idempotency: IdempotencyService;
      metrics: Metrics;
    },
  ) {
    this.models = new ModelAccess(deps.catalog, deps.registry);
    this.held = new HeldWork(deps);
  }

  /** Idempotency-Key handling, for the routes that run image requests. */
  get idempotency(): IdempotencyService {
    return this.deps.idempotency;
  }

  /**
   * Per-key limits (requests and images per minute, in-flight cap) and the model's cap on concurrent upstream
   * calls, checked before the hold so a refused request takes no credit: 429 rate_limit_exceeded with Retry-After.
   * The caller releases the admission when the request ends, however it ends.
   */
  admit(caller: Caller, prepared: PreparedImageRequest, requestId: string): Promise<Admission> {
    const perCall = imagesPerCall(prepared);
    return this.deps.limiter.admit({
      keyId: caller.keyId,
      keyLimits: caller.limits,
      images: prepared.request.n,
      model: prepared.model.id,
      modelCap: prepared.model.max_concurrency ?? 0,
      // generateAll fans n out into this many parallel upstream calls.
      modelSlots: Math.ceil(prepared.request.n / perCall),
      requestId,
    });
  }

  /**
   * Resolves an image model for this caller: 400 model_not_found if unknown or unservable, 403 if the key may not
   * use it, 400 (param `model`) for a text model.
   */
  resolveModel(caller: Caller, modelId: unknown): { model: ImageCatalogModel; routes: ResolvedRoute[] } {
    const model = this.models.resolve(caller, modelId);
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

  /** Reserves the quoted amount; 402 when the balance cannot cover it (nothing changes then). */
  reserve(caller: Caller, prepared: PreparedImageRequest, requestId: string): Promise<void> {
    return this.held.reserve({
      requestId, accountId: caller.accountId, keyId: caller.keyId, model: prepared.model.id, endpoint: prepared.endpoint, amount: prepared.quote.hold,
    });
  }

  /**
   * Runs a reserved request to its end and resolves the hold exactly once: settled for the images delivered,
   * released when none were. Throws a GatewayError (after releasing) when nothing can be delivered.
   */
  async execute(prepared: PreparedImageRequest, requestId: string, hooks: ExecuteHooks): Promise<ImageOutcome> {
    const { metrics } = this.deps;
    const started = performance.now();
    try {
      const outcome = await this.held.run((deadline) => this.executeInner(prepared, requestId, hooks, deadline));
      metrics.imageDelivered(prepared.model.id, prepared.endpoint, outcome.partialFailure !== undefined, outcome.images.length, outcome.cost, (performance.now() - started) / 1000);
      return outcome;
    } catch (error) {
      const refused = error instanceof GatewayError && error.code === 'content_policy_violation';
      metrics.imageRequest(prepared.model.id, prepared.endpoint, refused ? 'refused' : 'failed');
      throw error;
    }
  }

  private async executeInner(prepared: PreparedImageRequest, requestId: string, hooks: ExecuteHooks, deadline: AbortSignal): Promise<ImageOutcome> {
    const { store, logger } = this.deps;
    const signal = AbortSignal.any([hooks.signal, deadline]);
    const delivered: DeliveredImage[] = [];
    const warnings = [...prepared.warnings];
    let usage: UpstreamUsage | undefined;
    let failure: unknown;
    // Post-processing is chained so images are delivered in order even when transcoding takes a while.
    let chain: Promise<void> = Promise.resolve();
    const accept = (image: GeneratedImage) => {
      chain = chain.then(async () => {
        const ready = await this.finishImage(image, prepared, delivered.length);
        delivered.push(ready);
        hooks.onImage?.(ready);
      });
      return chain;
    };

    try {
      const result = await this.generateAll(prepared, signal, hooks.onPartialImage, (image) => void accept(image).catch(() => {}));
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

    if (delivered.length === 0) {
      await store.releaseReservation(requestId, describeFailure(failure)).catch((error) => logger.error({ err: error, requestId }, 'release failed'));
      throw toGatewayError(failure, signal, hooks.signal);
    }
    if (failure) {
      warnings.push({ type: 'other', message: `Only ${delivered.length} of ${prepared.request.n} images could be generated; you are charged for ${delivered.length}.` });
      logger.warn({ requestId, err: failure, delivered: delivered.length }, 'partial generation');
    }
    const { cost, upstreamCost } = settleImageCost(prepared.model, prepared.quote, delivered.length, usage);
    const settled = await store.settleReservation({
      requestId,
      cost,
      upstreamCost,
      images: delivered.length,
      detail: { basis: prepared.quote.basis, size: `${delivered[0].width}x${delivered[0].height}` },
    });
    if (!settled) {
      // Only the sweeper can have resolved it first, which means we overran the hold's expiry: deliver nothing we did not bill.
      logger.error({ requestId }, 'hold was already resolved before settlement');
      throw internalError();
    }
    const partialFailure = failure ? toGatewayError(failure, signal, hooks.signal) : undefined;
    return { images: delivered, cost, usage, warnings, partialFailure };
  }

  /**
   * Fans `n` out into calls of at most the adapter's images-per-call, run in parallel. Each call retries on
   * its route and then fails over to the next route, but only while the upstream has not accepted the work,
   * so nothing is generated or billed twice. Resolves with the calls' usage summed, or throws the first
   * failure once every call has ended (images already delivered through onImage are kept by the caller).
   */
  private async generateAll(
    prepared: PreparedImageRequest,
    signal: AbortSignal,
    onPartialImage: ExecuteHooks['onPartialImage'],
    onImage: (image: GeneratedImage) => void,
  ): Promise<{ usage: UpstreamUsage | undefined; warnings: Warning[] }> {
    const { request } = prepared;
    const perCall = imagesPerCall(prepared);
    const calls: NormalizedImageRequest[] = [];
    for (let offset = 0; offset < request.n; offset += perCall) {
      const n = Math.min(perCall, request.n - offset);
      // Each call gets its own seed so a fanned-out batch differs image to image, yet stays reproducible.
      calls.push({ ...request, n, seed: request.seed === undefined ? undefined : (request.seed + offset) % 2 ** 32 });
    }
    const results = await Promise.allSettled(calls.map((call) => this.callWithFailover(prepared, call, signal, onPartialImage, onImage)));
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    const succeeded = results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const warnings = succeeded.flatMap((result) => result.warnings);
    const usage = sumUsage(succeeded.map((result) => result.usage));
    if (failed) throw Object.assign(failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason)), { usage, warnings });
    return { usage, warnings };
  }

  private async callWithFailover(
    prepared: PreparedImageRequest,
    call: NormalizedImageRequest,
    signal: AbortSignal,
    onPartialImage: ExecuteHooks['onPartialImage'],
    onImage: (image: GeneratedImage) => void,
  ): Promise<ImageGenerationResult> {
    let lastError: unknown;
    const { routes } = prepared;
    for (let position = 0; position < routes.length; position++) {
      const route = routes[position];
      for (let attempt = 0; attempt < ATTEMPTS_PER_ROUTE; attempt++) {
        try {
          const result = await route.adapter.generate(call, route.target, {
            signal,
            onPartialImage,
            onImage: (image) => onImage(image),
          });
          // Adapters that do not stream images report them only in the result.
          if (result.images.length > 0 && !result.imagesDelivered) for (const image of result.images) onImage(image);
          this.deps.metrics.upstreamCall(route.adapter.provider, 'ok');
          return result;
        } catch (error) {
          lastError = error;
          const retryable = error instanceof ProviderError && !error.accepted && (error.kind === 'unavailable' || error.kind === 'rate_limited');
          const again = retryable && !signal.aborted && attempt + 1 < ATTEMPTS_PER_ROUTE;
          // Counted where it is decided: another attempt on this route, the next route, or the end of this call.
          const failover = retryable && !signal.aborted && !again && position + 1 < routes.length;
          this.deps.metrics.upstreamCall(route.adapter.provider, again ? 'retried' : failover ? 'failed_over' : 'error');
          if (!retryable || signal.aborted) throw error;
          this.deps.logger.warn({ provider: route.adapter.provider, attempt, err: error }, 'upstream failed before accepting the work');
          if (again) await sleep(backoffMs(attempt, (error as ProviderError).retryAfterSeconds), signal);
        }
      }
    }
    throw lastError;
  }

  private async finishImage(image: GeneratedImage, prepared: PreparedImageRequest, index: number): Promise<DeliveredImage> {
    let { base64, mediaType } = image;
    const wanted = prepared.request.outputFormat;
    if (wanted && mediaType !== `image/${wanted}`) {
      base64 = (await transcode(decodeBase64Text(base64), wanted)).toString('base64');
      mediaType = `image/${wanted}`;
    }
    // Validate what the upstream sent: it must be an image we can measure. `size` is read from these bytes.
    const probe = probeBase64(base64);
    if (!probe) throw new ProviderError('failed', 'The model returned data that is not a PNG, JPEG or WebP image.', { accepted: true });
    return { base64, mediaType: `image/${probe.format}`, width: probe.width, height: probe.height, revisedPrompt: image.revisedPrompt, index };
  }

  /** Waits (bounded) for in-flight generations, e.g. on SIGTERM. */
  drain(timeoutMs: number): Promise<boolean> {
    return this.held.drain(timeoutMs);
  }
}

export const ATTEMPTS_PER_ROUTE = 2;

/** Jittered exponential backoff, honouring the upstream's Retry-After up to 10 s (the caller is waiting). */
export function backoffMs(attempt: number, retryAfterSeconds: number | undefined): number {
  if (retryAfterSeconds !== undefined) return Math.min(10_000, retryAfterSeconds * 1000);
  const base = Math.min(4_000, 250 * 2 ** attempt);
  return base / 2 + Math.random() * (base / 2);
}

/**
 * Sums the usage of a fanned-out batch. A field counts only when every call reported it: settling on a partial sum
 * would charge for some calls' tokens and nothing for the others', so then the list price applies instead.
 */
function sumUsage(list: Array<UpstreamUsage | undefined>): UpstreamUsage | undefined {
  if (list.length === 0 || list.some((usage) => usage === undefined)) return undefined;
  const reported = list as UpstreamUsage[];
  const total: UpstreamUsage = {};
  for (const key of ['inputTokens', 'cachedInputTokens', 'inputImageTokens', 'outputTokens', 'outputImageTokens', 'reasoningTokens', 'billedImages'] as const) {
    if (reported.every((usage) => usage[key] !== undefined)) total[key] = reported.reduce((sum, usage) => sum + usage[key]!, 0);
  }
  if (reported.every((usage) => usage.costNanos !== undefined)) total.costNanos = reported.reduce((sum, usage) => sum + usage.costNanos!, 0n);
  return total;
}

/** Images one upstream call returns: the batch is fanned out in calls of this size (and admitted as that many slots). */
function imagesPerCall(prepared: PreparedImageRequest): number {
  return Math.max(1, prepared.routes[0].adapter.capabilities.maxImagesPerCall);
}

export function describeFailure(error: unknown): string {
  if (error instanceof ProviderError) return `${error.kind}: ${error.message}`.slice(0, 300);
  if (error instanceof Error) return error.name === 'AbortError' || error.name === 'TimeoutError' ? error.name : 'error';
  return 'error';
}

export function toGatewayError(error: unknown, signal: AbortSignal, callerSignal: AbortSignal): GatewayError {
  if (error instanceof GatewayError) return error;
  // A call ended by our deadline or by the caller leaving says so, whatever the adapter made of the abort (adapters
  // report an aborted request as 'failed' or 'unavailable'); a verdict the upstream actually gave is kept.
  const verdict = error instanceof ProviderError && error.kind !== 'failed' && error.kind !== 'unavailable';
  if (signal.aborted && !verdict) return abortedError(callerSignal);
  if (error instanceof ProviderError) {
    switch (error.kind) {
      case 'refused':
        return contentPolicyViolation(error.message);
      case 'invalid_request':
        return invalidRequest(error.message, error.param ?? null, 'invalid_value');
      case 'rate_limited':
        return rateLimited('The upstream provider is rate limiting this model. Please retry after a short delay.', error.retryAfterSeconds ?? 5);
      case 'unavailable':
        return upstreamFailure('The model provider is unavailable right now. Please retry.', 503);
      case 'misconfigured':
        return upstreamFailure('This model is misconfigured on the server. The operator has been notified in the logs.', 502);
      case 'failed':
        return upstreamFailure(`The generation failed: ${error.message}`, 502);
    }
  }
  return internalError(error);
}

function abortedError(callerSignal: AbortSignal): GatewayError {
  if (callerSignal.aborted) return new GatewayError('The request was cancelled by the client.', { status: 499, type: 'api_error', code: 'cancelled' });
  return new GatewayError('The generation took too long and was abandoned; you were not charged. Try `stream: true` or a smaller size.', {
    status: 504, type: 'api_error', code: 'timeout',
  });
}

/**
 * What "the same request" means: the endpoint, the model and the validated, normalised parameters (so key order
 * and spelled-out defaults do not matter), the response shape, and the bytes of any input images.
 */
export function fingerprintImageRequest(prepared: PreparedImageRequest): string {
  const { inputImages, ...request } = prepared.request;
  const images = inputImages.map((image) => ({ sha256: createHash('sha256').update(image.bytes).digest('hex'), mediaType: image.mediaType }));
  const canonical = canonicalJson({
    endpoint: prepared.endpoint, model: prepared.model.id, stream: prepared.stream, responseFormat: prepared.responseFormat, request, images,
  });
  return createHash('sha256').update(canonical).digest('hex');
}
