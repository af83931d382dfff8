import type { Warning } from '../../domain/warnings.ts';
import { mediaTypeOf } from '../../images/encode.ts';
import { probeBase64, probeImage } from '../../images/probe.ts';
import {
  failureFromStatus,
  header,
  originOf,
  sanitize,
  timeoutsFromOptions,
  upstreamRequest,
  type UpstreamResponse,
  type UpstreamTimeouts,
} from '../shared/http.ts';
import { hostMatches, safeDownload } from '../shared/safe-download.ts';
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
import { appIdOf, errorDetail, type FalHandle, parseHandle, parseResult, parseSubmitResponse } from './fal-api.ts';
import { PROVIDER, buildRequestBody } from './fal-request.ts';
import { waitForCompletion } from './fal-status.ts';

export { buildRequestBody } from './fal-request.ts';

/**
 * fal.ai queue: submit → status stream (polls as the fallback) → result → download (docs/providers.md,
 * upstream wire contracts). Serves any fal endpoint a catalog route names: `options.endpoint` (else `upstream_model`) for
 * generations, `options.edit_endpoint` for edits. Route options `poll_interval_ms` / `poll_timeout_ms` as for
 * BFL; `status_stream: false` polls only.
 *
 * Once the submit answers 200 the job is queued and billed by fal, so every later failure is accepted (no
 * failover); its handle (app, request id, links) goes to `onAccepted`, and `resume` collects it from any instance. fal never reports FAILED: a failed job "completes" and its error appears only on the result
 * fetch, as 422 for validation and content-policy errors.
 */
const DEFAULT_BASE_URL = 'https://queue.fal.run';
const QUEUE_HOST = 'queue.fal.run';
/**
 * fal's media CDN (v3.fal.media, fal.media [V S-fal, S-ai]). storage.googleapis.com is deliberately NOT
 * allowed: providers.md does not list it, and it is a multi-tenant host where anyone can publish anything.
 */
const DOWNLOAD_HOSTS = ['fal.media', '*.fal.media'];
const MAX_IMAGES_PER_CALL = 4;

export class FalImageAdapter implements ImageAdapter {
  readonly provider = 'fal';
  readonly capabilities: ImageAdapterCapabilities = {
    maxImagesPerCall: MAX_IMAGES_PER_CALL,
    supportsSeed: true,
    supportsPartialImages: false,
    supportsEdits: true,
    nativeFormats: ['jpeg', 'png'],
  };

  isConfigured(route: RouteTarget): boolean {
    const endpoint = route.options.endpoint ?? route.upstreamModel;
    return Boolean(route.credential) && typeof endpoint === 'string' && appIdOf(endpoint) !== undefined;
  }

  async generate(request: NormalizedImageRequest, route: RouteTarget, context: ImageCallContext): Promise<ImageGenerationResult> {
    const { signal } = context;
    const base = baseOf(route);
    const timeouts = timeoutsFromOptions(route.options);
    const endpoint = endpointFor(request, route);
    const { body, warnings } = buildRequestBody(request);

    const response = await upstreamRequest({
      method: 'POST',
      url: `${base}/${endpoint}`,
      headers: { ...authOf(route), 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
      signal,
      timeouts,
      provider: PROVIDER,
      // A lost answer may still have queued (and billed) the job: never submit it twice.
      sentMeansAccepted: true,
    });
    if (response.status !== 200) {
      const detail = errorDetail(response.json(), request.extra);
      throw failureFromStatus(PROVIDER, response, { message: detail.message, param: detail.param, refused: detail.contentPolicy });
    }
    const submitted = parseSubmitResponse(response.json());
    if (!submitted) throw new ProviderError('failed', `${PROVIDER} queued the job but its answer could not be read`, { accepted: true });
    const handle: FalHandle = {
      app_id: appIdOf(endpoint)!,
      request_id: submitted.request_id,
      status_url: submitted.status_url ?? null,
      response_url: submitted.response_url ?? null,
      cancel_url: submitted.cancel_url ?? null,
    };
    context.onAccepted?.({ ...handle });
    return this.collect(handle, request, route, signal, warnings);
  }

  /** Collects a job fal queued earlier (handle: its app, request id and links) by its status and result; never submits. */
  async resume(
    handle: Record<string, unknown>,
    request: NormalizedImageRequest,
    route: RouteTarget,
    context: ImageCallContext,
  ): Promise<ImageGenerationResult> {
    const queued = parseHandle(handle);
    if (!queued) throw new ProviderError('failed', `${PROVIDER} job handle is unreadable; the job cannot be resumed`, { accepted: true });
    return this.collect(queued, request, route, context.signal, buildRequestBody(request).warnings);
  }

  /** Waits for a queued job, fetches its result and downloads its images. */
  private async collect(
    handle: FalHandle,
    request: NormalizedImageRequest,
    route: RouteTarget,
    signal: AbortSignal,
    warnings: Warning[],
  ): Promise<ImageGenerationResult> {
    const base = baseOf(route);
    const timeouts = timeoutsFromOptions(route.options);
    const auth = authOf(route);
    // Links fal returns are used only on fal's queue host or the configured origin; otherwise they are rebuilt
    // there (the subpath is dropped for status, result and cancel [V S-fal]).
    const requestBase = `${base}/${handle.app_id}/requests/${encodeURIComponent(handle.request_id)}`;
    const statusUrl = onQueueHost(handle.status_url, base) ?? `${requestBase}/status`;
    const responseUrl = onQueueHost(handle.response_url, base) ?? requestBase;
    const cancelUrl = onQueueHost(handle.cancel_url, base) ?? `${requestBase}/cancel`;
    const cancel = () => {
      // Best effort, after the caller has gone: fal cancels only jobs that have not started.
      upstreamRequest({
        method: 'PUT',
        url: cancelUrl,
        headers: auth,
        signal: AbortSignal.timeout(5_000),
        timeouts,
        provider: PROVIDER,
      }).catch(() => {});
    };

    try {
      await waitForCompletion({ statusUrl, streamUrl: `${requestBase}/status/stream?logs=0` }, auth, route, timeouts, signal, cancel);
    } catch (error) {
      if (!signal.aborted) throw error;
      cancel();
      throw signal.reason;
    }
    const result = await fetchResult(responseUrl, auth, request, timeouts, signal);
    const collected = await collectImages(result, request, route, signal);
    return { images: collected.images, warnings: [...warnings, ...collected.warnings] };
  }
}

function baseOf(route: RouteTarget): string {
  return (route.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
}

function authOf(route: RouteTarget): Record<string, string> {
  return { authorization: `Key ${route.credential!}` };
}

function endpointFor(request: NormalizedImageRequest, route: RouteTarget): string {
  const endpoint = request.inputImages.length > 0 ? route.options.edit_endpoint : (route.options.endpoint ?? route.upstreamModel);
  if (typeof endpoint !== 'string' || !appIdOf(endpoint)) {
    throw request.inputImages.length > 0
      ? new ProviderError('invalid_request', `This model's ${PROVIDER} route has no edit endpoint.`, { param: 'image' })
      : new ProviderError('misconfigured', `The ${PROVIDER} route names no valid endpoint.`);
  }
  return endpoint;
}

function onQueueHost(raw: string | null | undefined, base: string): string | undefined {
  if (!raw) return undefined;
  try {
    const url = new URL(raw);
    if (url.username || url.password) return undefined;
    const official = url.protocol === 'https:' && hostMatches(url.hostname.toLowerCase(), QUEUE_HOST);
    return official || url.origin === new URL(base).origin ? url.toString() : undefined;
  } catch {
    return undefined;
  }
}

async function fetchResult(
  responseUrl: string,
  auth: Record<string, string>,
  request: NormalizedImageRequest,
  timeouts: UpstreamTimeouts,
  signal: AbortSignal,
): Promise<{ urls: Array<string | undefined>; flagged: boolean[] }> {
  let response: UpstreamResponse;
  try {
    response = await upstreamRequest({
      url: responseUrl,
      headers: { ...auth, accept: 'application/json' },
      signal,
      timeouts,
      provider: PROVIDER,
    });
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw new ProviderError('failed', `fetching the result from ${PROVIDER} failed`, { accepted: true, cause: error });
  }
  if (response.status !== 200) {
    const detail = errorDetail(response.json(), request.extra);
    const message = detail.message ? sanitize(detail.message) : `${PROVIDER} answered HTTP ${response.status}`;
    if (detail.contentPolicy)
      throw new ProviderError('refused', `${PROVIDER} refused the request under its content policy: ${message}`, { accepted: true });
    if (response.status === 422 && detail.validation)
      throw new ProviderError('invalid_request', message, { param: detail.param, accepted: true });
    const timedOut = header(response.headers, 'x-fal-request-timeout-type') === 'user' ? ' (request timeout)' : '';
    throw new ProviderError('failed', `${PROVIDER} could not generate the image${timedOut}: ${message}`, { accepted: true });
  }
  const result = parseResult(response.json());
  if (!result) throw new ProviderError('failed', `${PROVIDER} sent a result without images`, { accepted: true });
  return result;
}

async function collectImages(
  result: { urls: Array<string | undefined>; flagged: boolean[] },
  request: NormalizedImageRequest,
  route: RouteTarget,
  signal: AbortSignal,
): Promise<{ images: GeneratedImage[]; warnings: Warning[] }> {
  const warnings: Warning[] = [];
  // Never more than asked: extra images (multi-image endpoints) would be delivered but not held for.
  const usable = result.urls.slice(0, request.n).map((url, index) => ({ url, flagged: result.flagged[index] }));
  const withheld = usable.filter((item) => item.flagged).length;
  const downloads = await Promise.allSettled(usable.filter((item) => !item.flagged).map((item) => toImage(item.url, route, signal)));
  const images = downloads.flatMap((download) => (download.status === 'fulfilled' ? [download.value] : []));
  const lost = downloads.flatMap((download) => (download.status === 'rejected' ? [download.reason as unknown] : []));
  if (images.length === 0) {
    if (lost.length > 0) throw lost[0];
    if (withheld > 0)
      throw new ProviderError('refused', `${PROVIDER}'s safety checker withheld the generated image${withheld > 1 ? 's' : ''}.`, {
        accepted: true,
      });
    throw new ProviderError('failed', `${PROVIDER} returned no images`, { accepted: true });
  }
  // Images that cannot be served are not charged; the caller is told how many are missing and why.
  if (withheld > 0) {
    warnings.push({
      type: 'other',
      message: `${withheld} of ${request.n} images were withheld by ${PROVIDER}'s safety checker; you are charged only for the ${images.length} delivered.`,
    });
  }
  if (lost.length > 0) {
    const reason = lost[0] instanceof ProviderError ? ` (${lost[0].message})` : '';
    warnings.push({
      type: 'other',
      message: `${lost.length} of ${request.n} images could not be fetched from ${PROVIDER}${reason}; you are charged only for the ${images.length} delivered.`,
    });
  }
  return { images, warnings };
}

async function toImage(url: string | undefined, route: RouteTarget, signal: AbortSignal): Promise<GeneratedImage> {
  if (!url) throw new ProviderError('failed', `${PROVIDER} returned an image without a link`, { accepted: true });
  if (url.startsWith('data:')) {
    // sync_mode answers: the base64 is kept as sent.
    const comma = url.indexOf(',');
    const base64 = comma > 0 && /;base64$/i.test(url.slice(0, comma)) ? url.slice(comma + 1) : '';
    const probe = probeBase64(base64);
    if (!probe || probe.format === 'gif')
      throw new ProviderError('failed', `${PROVIDER} returned an inline result that is not an image`, { accepted: true });
    return { base64, mediaType: mediaTypeOf(probe.format) };
  }
  const { bytes } = await safeDownload(
    url,
    { allowedHosts: DOWNLOAD_HOSTS, trustedOrigins: originOf(route.baseUrl), provider: PROVIDER },
    signal,
  );
  const probe = probeImage(bytes);
  if (!probe || probe.format === 'gif')
    throw new ProviderError('failed', `${PROVIDER} delivered a result that is not an image`, { accepted: true });
  return { base64: bytes.toString('base64'), mediaType: mediaTypeOf(probe.format) };
}
