import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, invalidRequest } from '../../domain/errors.ts';
import { base64Ascii, type Base64Text } from '../../images/base64.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import {
  fingerprintImageRequest,
  type ImageGenerationService,
  type ImageOutcome,
  type PreparedImageRequest,
} from '../../services/image-generation.ts';
import type { Authenticate } from '../authenticate.ts';
import type { HostedAnswer, HostedAnswers } from '../../services/jobs/hosted-answers.ts';
import type { JobService } from '../../services/jobs/job-service.ts';
import { requestOrigin, submitImageJob } from './jobs.ts';
import { answerBilled, jsonStoredResponse, type AnswerStream, type Charged } from '../billed-answer.ts';
import { costHeaders, imageResponseParts, imageSettings, usageObject } from '../image-response.ts';

export interface ImageRouteDeps {
  images: ImageGenerationService;
  metrics: Metrics;
  authenticate: Authenticate;
  keepaliveIntervalMs: number;
  /** Async jobs (Prefer: respond-async or "async": true); absent = every request is synchronous. */
  jobs?: JobService;
  /** DEEPSHI_URL_RESULTS=hosted: `response_format: "url"` answers link to hosted files; absent = `data:` URIs. */
  hostedAnswers?: HostedAnswers;
}

export function registerImageRoutes(app: FastifyInstance, deps: ImageRouteDeps): void {
  const refused = (request: FastifyRequest) => deps.metrics.imageRejected(requestedModel(request.body), 'images.generations');
  app.post('/v1/images/generations', { preHandler: deps.authenticate(refused) }, async (request, reply) => {
    let prepared: PreparedImageRequest;
    let asJob: { async: boolean; webhookUrl: string | undefined } | undefined;
    try {
      const body = request.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw invalidRequest('The request body must be a JSON object with at least "model" and "prompt".', null, 'invalid_body');
      }
      asJob = deps.jobs?.takeJobFields(body as Record<string, unknown>, request.headers.prefer);
      prepared = deps.images.prepare(request.caller, body as Record<string, unknown>, { endpoint: 'images.generations' });
    } catch (error) {
      refused(request);
      throw error;
    }
    if (asJob?.async) return submitImageJob(request, reply, prepared, asJob.webhookUrl, { jobs: deps.jobs!, metrics: deps.metrics });
    return runImageRequest(request, reply, prepared, deps, 'image_generation');
  });
}

/** The `model` a request body names, whatever it is (metrics map it to a catalog id or "unknown"). */
export function requestedModel(body: unknown): unknown {
  return body !== null && typeof body === 'object' ? (body as { model?: unknown }).model : undefined;
}

/**
 * Shared by generations and edits: the billed path of answerBilled ([idempotency] → limits → hold → generate →
 * settle), answered as the images JSON or as SSE: partial images as they arrive, then the completed images once the
 * charge is settled (what an idempotent retry gets back), and an error event for a partial failure.
 */
export function runImageRequest(
  request: FastifyRequest,
  reply: FastifyReply,
  prepared: PreparedImageRequest,
  deps: ImageRouteDeps,
  eventPrefix: 'image_generation' | 'image_edit',
): Promise<FastifyReply> {
  const requestId = String(request.id);
  const created = Math.floor(Date.now() / 1000);
  const hosted =
    prepared.responseFormat === 'url' ? deps.hostedAnswers?.begin(request.caller.accountId, requestOrigin(request), requestId) : undefined;
  return answerBilled(request, reply, request.caller, prepared, {
    service: deps.images,
    fingerprint: fingerprintImageRequest,
    onRejected: () => deps.metrics.imageRejected(prepared.model.id, prepared.endpoint),
    stream: prepared.stream,
    warnings: prepared.warnings,
    keepaliveIntervalMs: deps.keepaliveIntervalMs,
    json: async (signal, idempotent) => {
      // Built before the charge is settled, so the bytes go out right after it (and an Idempotency-Key's response is
      // committed with the charge: a crash in between cannot lose it).
      let parts: Buffer[] | undefined;
      const partsOf = (outcome: ImageOutcome) =>
        (parts ??= imageResponseParts(outcome, {
          model: prepared.model.id,
          created,
          responseFormat: prepared.responseFormat,
          settings: imageSettings(prepared.request.params, outcome),
          urlOf: hosted?.urlOf,
        }));
      const outcome = await deps.images.execute(prepared, requestId, {
        signal,
        onImage: hosted?.onImage,
        savedResponse:
          idempotent &&
          ((settling) => idempotent.atSettlement(jsonStoredResponse(partsOf(settling), costHeaders(settling.cost, settling.warnings)))),
      });
      return { ...outcome, parts: partsOf(outcome) };
    },
    sse: (signal, stream) => streamImages(request, prepared, deps, eventPrefix, created, signal, stream, hosted),
    sseError: (stream, error) => {
      const gatewayError =
        error instanceof GatewayError ? error : new GatewayError('The generation failed.', { status: 500, type: 'api_error' });
      stream.event('error', [Buffer.from(JSON.stringify({ type: 'error', error: gatewayError.toEnvelope().error }))], false);
    },
  });
}

/** Splits nanos into n shares that sum exactly: equal parts, the remainder on the first. */
export function splitCost(total: bigint, count: number): bigint[] {
  if (count <= 0) return [];
  const each = total / BigInt(count);
  const shares = Array.from({ length: count }, () => each);
  shares[0] += total - each * BigInt(count);
  return shares;
}

async function streamImages(
  request: FastifyRequest,
  prepared: PreparedImageRequest,
  deps: ImageRouteDeps,
  eventPrefix: 'image_generation' | 'image_edit',
  created: number,
  signal: AbortSignal,
  stream: AnswerStream,
  hosted: HostedAnswer | undefined,
): Promise<Charged> {
  // An image event's JSON as byte parts around the base64, which is written as the bytes it arrived in.
  const imageEvent = (head: string, base64: Base64Text, tail: string) => [Buffer.from(head), base64Ascii(base64), Buffer.from(tail)];
  const outputFormat = prepared.request.outputFormat ?? prepared.model.native_output_format;
  // `quality` and `background` are in every event, as the SDKs type them: `auto` where the model takes no such setting.
  const setting = (name: string) =>
    JSON.stringify(typeof prepared.request.params[name] === 'string' ? prepared.request.params[name] : 'auto');
  const extras = (size: string) =>
    `"created_at":${created},"size":"${size}","output_format":"${outputFormat}","quality":${setting('quality')},"background":${setting('background')}`;
  const outcome = await deps.images.execute(prepared, String(request.id), {
    signal,
    onImage: hosted?.onImage,
    onPartialImage: (partial) => {
      stream.event(
        `${eventPrefix}.partial_image`,
        imageEvent(
          `{"type":"${eventPrefix}.partial_image","b64_json":"`,
          partial.base64,
          `","partial_image_index":${partial.partialImageIndex},"image_index":${partial.imageIndex},${extras(`${prepared.request.width}x${prepared.request.height}`)}}`,
        ),
        false,
      );
    },
  });
  // Completed events go out once the charge is settled, so their costs are the settled amount split across the
  // images (the remainder nanos on the first) and always sum to what was charged, whatever the price rule
  // (list, upstream tokens or upstream cost). The last event also carries the request's token counts.
  const shares = splitCost(outcome.cost, outcome.images.length);
  outcome.images.forEach((image, position) => {
    const isLast = position === outcome.images.length - 1;
    // With hosted url results the completed event also names the image's link (the image itself stays in b64_json).
    const link = hosted?.urlOf(image);
    stream.event(
      `${eventPrefix}.completed`,
      imageEvent(
        `{"type":"${eventPrefix}.completed","b64_json":"`,
        image.base64,
        `",${link !== undefined ? `"url":${JSON.stringify(link)},` : ''}"index":${image.index},${extras(`${image.width}x${image.height}`)},"usage":${JSON.stringify(usageObject(isLast ? outcome.usage : undefined, shares[position]))}` +
          // Every warning of the request, those found during the generation included (the headers had only the earlier ones).
          `${isLast && outcome.warnings.length > 0 ? `,"warnings":${JSON.stringify(outcome.warnings)}` : ''}}`,
      ),
    );
  });
  request.log.info({ cost: outcome.cost.toString(), images: outcome.images.length }, 'stream settled');
  if (outcome.partialFailure) {
    const reason = outcome.partialFailure;
    const message = `Only ${outcome.images.length} of ${prepared.request.n} images could be generated; you were charged for ${outcome.images.length}. ${reason.message}`;
    stream.event('error', [Buffer.from(JSON.stringify({ type: 'error', error: { ...reason.toEnvelope().error, message } }))]);
  }
  return outcome;
}
