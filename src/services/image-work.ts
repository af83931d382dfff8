import { createHash } from 'node:crypto';
import type { ImageCatalogModel } from '../catalog/catalog.ts';
import type { ImageRequestEnvelope } from '../catalog/image-request.ts';
import type { PriceQuote } from '../billing/pricing.ts';
import { canonicalJson } from '../domain/canonical-json.ts';
import type { GatewayError } from '../domain/errors.ts';
import type { Nanos } from '../domain/money.ts';
import type { UpstreamUsage } from '../domain/usage.ts';
import type { Warning } from '../domain/warnings.ts';
import type { Base64Text } from '../images/base64.ts';
import type { SettleInput } from '../store/types.ts';
import type { ResolvedRoute } from '../providers/registry.ts';
import type { PartialImage } from '../providers/types.ts';
import type { BilledServiceDeps } from './billed-service.ts';
import type { BilledTicket } from './billed-work.ts';

/** What an image request is while it is worked on: the prepared request, its hooks and outcome, and its runner ticket. */
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
  /** Each finished image, post-processed, in delivery order (streaming sends it at once). Awaited before settling. */
  onImage?: (image: DeliveredImage) => void | Promise<void>;
  /** The upstream accepted a call and gave a handle it can be resumed by (async jobs persist it: src/services/jobs/). */
  onAccepted?: (accepted: UpstreamHandle) => void;
  /** Resume this accepted call instead of submitting (a job taken over from an instance that stopped): never resubmitted. */
  resume?: UpstreamHandle;
  /** The Idempotency-Key response for this outcome, committed with its charge (BilledWorkRunner.run). */
  savedResponse?: (outcome: ImageOutcome) => SettleInput['idempotency'];
}

/** An accepted upstream call: the index of its route in the prepared request and the adapter's handle. */
export interface UpstreamHandle {
  route: number;
  handle: Record<string, unknown>;
}

export interface ImageServiceDeps extends BilledServiceDeps {
  /** Largest image an upstream may hand us (DEEPSHI_UPSTREAM_MAX_PIXELS / _MAX_SIDE): checked on its header first. */
  upstreamImageLimits?: UpstreamImageLimits;
}

/** Edit rules the route cannot know: the model's own cap and the upload limits the server was started with. */
export interface EditUploadLimits {
  /** Largest image by pixel count; the decode check's libvips limit too. */
  maxPixels: number;
}

/** The largest image an upstream may return: pixels (width x height) and either side. */
export interface UpstreamImageLimits {
  maxPixels: number;
  maxSide: number;
}

export const DEFAULT_UPSTREAM_IMAGE_LIMITS: UpstreamImageLimits = { maxPixels: 40_000_000, maxSide: 16_384 };

export function exceedsLimits(size: { width: number; height: number }, limits: UpstreamImageLimits): boolean {
  return size.width > limits.maxSide || size.height > limits.maxSide || size.width * size.height > limits.maxPixels;
}

/** The runner's view of an image request: n images, fanned out into this many parallel upstream calls. */
export function imageTicket(prepared: PreparedImageRequest): BilledTicket {
  return {
    model: prepared.model.id,
    endpoint: prepared.endpoint,
    hold: prepared.quote.hold,
    images: prepared.request.n,
    modelCap: prepared.model.max_concurrency ?? 0,
    modelSlots: Math.ceil(prepared.request.n / imagesPerCall(prepared)),
  };
}

/** Images one upstream call returns: the batch is fanned out in calls of this size (and admitted as that many slots). */
export function imagesPerCall(prepared: PreparedImageRequest): number {
  return Math.max(1, prepared.routes[0].adapter.capabilities.maxImagesPerCall);
}

/**
 * What "the same request" means: the endpoint, the model and the validated, normalised parameters (so key order
 * and spelled-out defaults do not matter), the response shape, and the bytes of any input images.
 */
export function fingerprintImageRequest(prepared: PreparedImageRequest): string {
  const { inputImages, ...request } = prepared.request;
  const images = inputImages.map((image) => ({
    sha256: createHash('sha256').update(image.bytes).digest('hex'),
    mediaType: image.mediaType,
  }));
  const canonical = canonicalJson({
    endpoint: prepared.endpoint,
    model: prepared.model.id,
    stream: prepared.stream,
    responseFormat: prepared.responseFormat,
    request,
    images,
  });
  return createHash('sha256').update(canonical).digest('hex');
}
