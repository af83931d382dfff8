import type { Warning } from '../../domain/warnings.ts';
import { mediaTypeOf } from '../../images/encode.ts';
import { probeImage } from '../../images/probe.ts';
import { forwardableExtras } from '../shared/forwarded-extras.ts';
import {
  failureFromStatus,
  originOf,
  sanitize,
  timeoutsFromOptions,
  upstreamRequest,
  type UpstreamResponse,
  type UpstreamTimeouts,
} from '../shared/http.ts';
import { pollSchedule } from '../shared/polling.ts';
import { hostMatches, safeDownload } from '../shared/safe-download.ts';
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
import {
  RUNNING_STATUSES,
  creditsToNanos,
  errorDetail,
  parsePollResponse,
  parseSubmitResponse,
  type BflSubmitResponse,
} from './bfl-api.ts';

/**
 * Black Forest Labs (FLUX.2): submit → poll → download (docs/providers.md, upstream wire contracts).
 *
 * The job is accepted (and billed by BFL) once the submit answers 200, so every later failure is
 * `accepted: true` and never fails over. Route options: `poll_interval_ms` (first wait, default 500, growing
 * ×1.5 up to 4 s) and `poll_timeout_ms` (default 270 s); `timeouts` as everywhere.
 */
const PROVIDER = 'Black Forest Labs';
const DEFAULT_BASE_URL = 'https://api.bfl.ai';
/** Result CDNs [V S-bfl]: signed Azure blob links or delivery-*.bfl.ai. */
const DOWNLOAD_HOSTS = ['*.bfl.ai', 'bfldeliveryprod.blob.core.windows.net'];
const MAX_INPUT_IMAGES = 8;
/** Consecutive failed polls (5xx, 429, resets, "Task not found") tolerated before the job is given up. */
const MAX_POLL_ERRORS = 3;

export class BflImageAdapter implements ImageAdapter {
  readonly provider = 'bfl';
  readonly capabilities: ImageAdapterCapabilities = {
    maxImagesPerCall: 1,
    supportsSeed: true,
    supportsPartialImages: false,
    supportsEdits: true,
    nativeFormats: ['jpeg', 'png'],
  };

  isConfigured(route: RouteTarget): boolean {
    return Boolean(route.credential && route.upstreamModel);
  }

  generate(request: NormalizedImageRequest, route: RouteTarget, context: ImageCallContext): Promise<ImageGenerationResult> {
    return eachImageCall(request, context, (call) => this.generateOne(call, route, context.signal, context.onAccepted));
  }

  /** Collects a job BFL accepted earlier (handle: its id, polling URL and cost) by polling; never submits. */
  async resume(
    handle: Record<string, unknown>,
    _request: NormalizedImageRequest,
    route: RouteTarget,
    context: ImageCallContext,
  ): Promise<ImageGenerationResult> {
    const submitted = parseSubmitResponse(handle);
    if (!submitted)
      throw new ProviderError('failed', `${PROVIDER} job handle is unreadable; the job cannot be resumed`, { accepted: true });
    const base = (route.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    const outcome = await this.collect(submitted, base, route, timeoutsFromOptions(route.options), context.signal, []);
    return { images: [outcome.image], warnings: outcome.warnings, usage: outcome.usage };
  }

  private async generateOne(
    request: NormalizedImageRequest,
    route: RouteTarget,
    signal: AbortSignal,
    onAccepted?: ImageCallContext['onAccepted'],
  ): Promise<SingleImageOutcome> {
    const base = (route.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    const timeouts = timeoutsFromOptions(route.options);
    const key = route.credential!;
    const { body, warnings } = buildRequestBody(request);

    const response = await upstreamRequest({
      method: 'POST',
      url: `${base}/v1/${route.upstreamModel}`,
      headers: { 'x-key': key, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
      signal,
      timeouts,
      provider: PROVIDER,
      // A lost answer may still have queued (and billed) the job: never submit it twice.
      sentMeansAccepted: true,
    });
    if (response.status !== 200) throw failureFromStatus(PROVIDER, response, errorDetail(response.json(), request.extra));
    const submitted = parseSubmitResponse(response.json());
    if (!submitted) throw new ProviderError('failed', `${PROVIDER} accepted the job but its answer could not be read`, { accepted: true });
    onAccepted?.({ id: submitted.id, polling_url: submitted.polling_url ?? null, cost: submitted.cost ?? null });
    return this.collect(submitted, base, route, timeouts, signal, warnings);
  }

  /** Polls an accepted job, downloads and checks its image. */
  private async collect(
    submitted: BflSubmitResponse,
    base: string,
    route: RouteTarget,
    timeouts: UpstreamTimeouts,
    signal: AbortSignal,
    warnings: Warning[],
  ): Promise<SingleImageOutcome> {
    const key = route.credential!;
    const usage = { costNanos: creditsToNanos(submitted.cost), billedImages: 1 };
    const sample = await this.waitForSample(submitted, base, route, key, timeouts, signal);
    const { bytes } = await safeDownload(
      sample,
      { allowedHosts: DOWNLOAD_HOSTS, trustedOrigins: originOf(route.baseUrl), provider: PROVIDER },
      signal,
    );
    const probe = probeImage(bytes);
    if (!probe || probe.format === 'gif')
      throw new ProviderError('failed', `${PROVIDER} delivered a result that is not a PNG or JPEG image`, { accepted: true });
    return { image: { base64: bytes.toString('base64'), mediaType: mediaTypeOf(probe.format) }, warnings, usage };
  }

  /** Polls until Ready and returns the signed sample URL; throws on moderation, errors and the poll timeout. */
  private async waitForSample(
    submitted: BflSubmitResponse,
    base: string,
    route: RouteTarget,
    key: string,
    timeouts: UpstreamTimeouts,
    signal: AbortSignal,
  ): Promise<string> {
    const pollUrl = submitted.polling_url
      ? trustedPollingUrl(submitted.polling_url, base)
      : `${base}/v1/get_result?id=${encodeURIComponent(submitted.id)}`;
    const schedule = pollSchedule(route.options, PROVIDER);
    let errors = 0;
    for (;;) {
      await schedule.next(signal);
      let response: UpstreamResponse;
      try {
        response = await upstreamRequest({
          url: pollUrl,
          headers: { 'x-key': key, accept: 'application/json' },
          signal,
          timeouts,
          provider: PROVIDER,
        });
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        if (++errors > MAX_POLL_ERRORS) throw acceptedFailure(error, `polling ${PROVIDER} failed`);
        continue;
      }
      if (response.status === 429 || response.status >= 500) {
        if (++errors > MAX_POLL_ERRORS)
          throw new ProviderError('failed', `polling ${PROVIDER} failed (HTTP ${response.status})`, { accepted: true });
        continue;
      }
      if (response.status !== 200)
        throw new ProviderError('failed', `polling ${PROVIDER} failed (HTTP ${response.status})`, { accepted: true });
      const poll = parsePollResponse(response.json());
      if (!poll) throw new ProviderError('failed', `${PROVIDER} sent an unreadable job status`, { accepted: true });
      switch (poll.status) {
        case 'Ready':
          if (!poll.sample)
            throw new ProviderError('failed', `${PROVIDER} reported the image ready but sent no result link`, { accepted: true });
          return poll.sample;
        case 'Request Moderated':
          throw new ProviderError('refused', `${PROVIDER}'s moderation refused the request (the prompt or an input image).`, {
            accepted: true,
          });
        case 'Content Moderated':
          throw new ProviderError('refused', `${PROVIDER}'s moderation refused the generated image (output moderation).`, {
            accepted: true,
          });
        case 'Error':
        case 'Failed':
          throw new ProviderError('failed', `${PROVIDER} reported the job as ${poll.status}${describeDetails(poll.details)}`, {
            accepted: true,
          });
        case 'Task not found':
          // Seen briefly right after a submit when the poll lands on another cluster [R]: tolerated a few times.
          if (++errors > MAX_POLL_ERRORS)
            throw new ProviderError('failed', `${PROVIDER} lost the job (Task not found)`, { accepted: true });
          continue;
        default:
          // Pending and its variants; an unknown status is treated as still running until the poll timeout.
          if (RUNNING_STATUSES.has(poll.status)) errors = 0;
      }
    }
  }
}

/**
 * The upstream request body, every field named. Extras go in first so they can never override what Deepshi
 * owns; `undefined` fields are left out by JSON.stringify (so an extra named like an owned field is removed).
 */
export function buildRequestBody(request: NormalizedImageRequest): { body: Record<string, unknown>; warnings: Warning[] } {
  if (request.inputImages.length > MAX_INPUT_IMAGES) {
    throw new ProviderError('invalid_request', `${PROVIDER} takes at most ${MAX_INPUT_IMAGES} input images.`, { param: 'image' });
  }
  const { fields, warnings } = forwardableExtras(request.extra, { owned: OWNED_FIELDS, provider: PROVIDER });
  const images = request.inputImages.map((image) => image.bytes.toString('base64'));
  const body: Record<string, unknown> = {
    ...fields,
    prompt: request.prompt,
    width: request.width,
    height: request.height,
    seed: request.seed,
    safety_tolerance: request.params.safety_tolerance,
    // BFL makes jpeg or png; webp is transcoded by the pipeline from jpeg.
    output_format: request.outputFormat === 'png' ? 'png' : 'jpeg',
    input_image: images[0],
    input_image_2: images[1],
    input_image_3: images[2],
    input_image_4: images[3],
    input_image_5: images[4],
    input_image_6: images[5],
    input_image_7: images[6],
    input_image_8: images[7],
    // Results are collected by polling; a webhook would deliver them around the gateway.
    webhook_url: undefined,
    webhook_secret: undefined,
  };
  return { body, warnings };
}

const OWNED_FIELDS = [
  'prompt',
  'width',
  'height',
  'seed',
  'safety_tolerance',
  'output_format',
  'webhook_url',
  'webhook_secret',
  'input_image',
  'input_image_2',
  'input_image_3',
  'input_image_4',
  'input_image_5',
  'input_image_6',
  'input_image_7',
  'input_image_8',
];

/**
 * BFL's polling_url may name another cluster (api.us1.bfl.ai) [V S-ai]. The key is sent there only when it is
 * HTTPS on *.bfl.ai or on the operator's configured base URL origin; any other link is refused, not followed.
 */
function trustedPollingUrl(raw: string, base: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ProviderError('failed', `${PROVIDER} sent a malformed polling link`, { accepted: true });
  }
  const configured = url.origin === new URL(base).origin;
  const official = url.protocol === 'https:' && hostMatches(url.hostname.toLowerCase(), '*.bfl.ai');
  if ((!configured && !official) || url.username || url.password) {
    throw new ProviderError('failed', `${PROVIDER} sent a polling link on a host it does not use; it was not followed.`, {
      accepted: true,
    });
  }
  return url.toString();
}

function describeDetails(details: unknown): string {
  if (details === null || details === undefined) return '';
  const text = typeof details === 'string' ? details : JSON.stringify(details);
  return `: ${sanitize(text).slice(0, 200)}`;
}

function acceptedFailure(error: unknown, message: string): ProviderError {
  return new ProviderError('failed', error instanceof ProviderError ? `${message}: ${error.message}` : message, {
    accepted: true,
    cause: error,
  });
}
