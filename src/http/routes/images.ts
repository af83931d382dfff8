import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, invalidRequest } from '../../domain/errors.ts';
import { base64Ascii, type Base64Text } from '../../images/base64.ts';
import type { Store } from '../../store/types.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import { fingerprintImageRequest, type Caller, type ImageGenerationService, type ImageOutcome, type PreparedImageRequest } from '../../services/image-generation.ts';
import type { IdempotentRun } from '../../services/idempotency.ts';
import { admitAndReserve } from '../billed-request.ts';
import { authenticate } from '../authenticate.ts';
import { sendError } from '../error-handler.ts';
import { costHeaders, imageResponseParts, usageObject, warningHeaders } from '../image-response.ts';
import { openSse } from '../sse.ts';

export interface ImageRouteDeps {
  store: Store;
  images: ImageGenerationService;
  metrics: Metrics;
  keyPepper: string;
  keepaliveIntervalMs: number;
}

export function registerImageRoutes(app: FastifyInstance, deps: ImageRouteDeps): void {
  app.post('/v1/images/generations', async (request, reply) => {
    let caller: Caller;
    let prepared: PreparedImageRequest;
    try {
      caller = await authenticate(request, deps.store, deps.keyPepper);
      const body = request.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw invalidRequest('The request body must be a JSON object with at least "model" and "prompt".', null, 'invalid_body');
      }
      prepared = deps.images.prepare(caller, body as Record<string, unknown>, { endpoint: 'images.generations' });
    } catch (error) {
      deps.metrics.imageRejected(requestedModel(request.body), 'images.generations');
      throw error;
    }
    return runImageRequest(request, reply, caller, prepared, deps, 'image_generation');
  });
}

/** The `model` a request body names, whatever it is (metrics map it to a catalog id or "unknown"). */
export function requestedModel(body: unknown): unknown {
  return body !== null && typeof body === 'object' ? (body as { model?: unknown }).model : undefined;
}

/**
 * Shared by generations and edits: [idempotency] → limits → hold → generate → settle, answered as JSON or SSE.
 * Everything that can fail before the hold (auth, validation, limits, credits) fails as a normal JSON error, and a
 * request refused by a limit takes no hold. The admission's in-flight slots are given back however the request
 * ends (success, error, stream end, client gone).
 *
 * With an Idempotency-Key (docs/scale-out.md) a retry gets the first response back; the first request then runs
 * to its end even if its caller goes away (that is the point of retrying with the key), and only a request that
 * charged something saves its response: JSON as sent, SSE as its final events (completed images, error).
 */
export async function runImageRequest(
  request: FastifyRequest,
  reply: FastifyReply,
  caller: Caller,
  prepared: PreparedImageRequest,
  deps: ImageRouteDeps,
  eventPrefix: 'image_generation' | 'image_edit',
): Promise<FastifyReply> {
  const reservation = await admitAndReserve(request, reply, caller, prepared, deps.images, fingerprintImageRequest, () =>
    deps.metrics.imageRejected(prepared.model.id, prepared.endpoint),
  );
  if (reservation.kind === 'replayed') return reservation.reply;
  const { admission, idempotent } = reservation;
  try {
    return await generate(request, reply, prepared, deps, eventPrefix, String(request.id), admission.headers, idempotent);
  } finally {
    await admission.release();
  }
}

/** Splits nanos into n shares that sum exactly: equal parts, the remainder on the first. */
export function splitCost(total: bigint, count: number): bigint[] {
  if (count <= 0) return [];
  const each = total / BigInt(count);
  const shares = Array.from({ length: count }, () => each);
  shares[0] += total - each * BigInt(count);
  return shares;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const SSE_TYPE = 'text/event-stream; charset=utf-8';

async function generate(
  request: FastifyRequest,
  reply: FastifyReply,
  prepared: PreparedImageRequest,
  deps: ImageRouteDeps,
  eventPrefix: 'image_generation' | 'image_edit',
  requestId: string,
  limitHeaders: Record<string, string>,
  idempotent: IdempotentRun | undefined,
): Promise<FastifyReply> {
  // Cancelled when the caller goes away before the answer is ready: the upstream work is abandoned, the hold released.
  // Not for an idempotent request: its caller will retry with the key and must find the finished result.
  const disconnect = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableEnded && !idempotent) disconnect.abort();
  };
  reply.raw.on('close', onClose);
  const created = Math.floor(Date.now() / 1000);

  try {
    if (!prepared.stream) {
      let outcome;
      try {
        outcome = await deps.images.execute(prepared, requestId, { signal: disconnect.signal });
      } catch (error) {
        await idempotent?.abandon(); // execute charged nothing when it throws
        throw error;
      }
      const headers = costHeaders(outcome.cost, outcome.warnings);
      const parts = imageResponseParts(outcome, { model: prepared.model.id, created, responseFormat: prepared.responseFormat });
      await idempotent?.complete({ status: 200, headers: { 'content-type': JSON_TYPE, ...headers }, body: Buffer.concat(parts).toString('utf8') });
      const length = parts.reduce((total, part) => total + part.length, 0);
      // A stream of the parts (with its length declared) rather than one concatenated buffer: see imageResponseParts.
      return reply.headers({ ...limitHeaders, ...headers, 'content-length': String(length) }).type(JSON_TYPE).send(Readable.from(parts, { objectMode: false }));
    }

    // The warnings known before the generation; the settled cost is in the completed events, never a header.
    const sse = openSse(reply, { ...limitHeaders, ...warningHeaders(prepared.warnings) });
    sse.startKeepalive(deps.keepaliveIntervalMs);
    // The final events (not partials or keepalives) are what an idempotent retry gets back.
    const finalEvents: Buffer[] = [];
    const final = (type: string, data: Buffer[]) => {
      const frame = sse.eventParts(type, data);
      if (idempotent) finalEvents.push(...frame);
    };
    // An image event's JSON as byte parts around the base64, which is written as the bytes it arrived in.
    const imageEvent = (head: string, base64: Base64Text, tail: string) => [Buffer.from(head), base64Ascii(base64), Buffer.from(tail)];
    const outputFormat = prepared.request.outputFormat ?? prepared.model.native_output_format;
    const extras = (size: string) =>
      `"created_at":${created},"size":"${size}","output_format":"${outputFormat}"` +
      (typeof prepared.request.params.quality === 'string' ? `,"quality":${JSON.stringify(prepared.request.params.quality)}` : '') +
      (typeof prepared.request.params.background === 'string' ? `,"background":${JSON.stringify(prepared.request.params.background)}` : '');
    let charged: ImageOutcome | undefined;
    try {
      const outcome = await deps.images.execute(prepared, requestId, {
        signal: disconnect.signal,
        onPartialImage: (partial) => {
          sse.eventParts(
            `${eventPrefix}.partial_image`,
            imageEvent(
              `{"type":"${eventPrefix}.partial_image","b64_json":"`,
              partial.base64,
              `","partial_image_index":${partial.partialImageIndex},"image_index":${partial.imageIndex},${extras(`${prepared.request.width}x${prepared.request.height}`)}}`,
            ),
          );
        },
      });
      charged = outcome;
      // Completed events go out once the charge is settled, so their costs are the settled amount split across the
      // images (the remainder nanos on the first) and always sum to what was charged, whatever the price rule
      // (list, upstream tokens or upstream cost). The last event also carries the request's token counts.
      const shares = splitCost(outcome.cost, outcome.images.length);
      outcome.images.forEach((image, position) => {
        const isLast = position === outcome.images.length - 1;
        final(
          `${eventPrefix}.completed`,
          imageEvent(
            `{"type":"${eventPrefix}.completed","b64_json":"`,
            image.base64,
            `","index":${image.index},${extras(`${image.width}x${image.height}`)},"usage":${JSON.stringify(usageObject(isLast ? outcome.usage : undefined, shares[position]))}` +
              // Every warning of the request, those found during the generation included (the headers had only the earlier ones).
              `${isLast && outcome.warnings.length > 0 ? `,"warnings":${JSON.stringify(outcome.warnings)}` : ''}}`,
          ),
        );
      });
      request.log.info({ cost: outcome.cost.toString(), images: outcome.images.length }, 'stream settled');
      if (outcome.partialFailure) {
        const reason = outcome.partialFailure;
        const message = `Only ${outcome.images.length} of ${prepared.request.n} images could be generated; you were charged for ${outcome.images.length}. ${reason.message}`;
        final('error', [Buffer.from(JSON.stringify({ type: 'error', error: { ...reason.toEnvelope().error, message } }))]);
      }
    } catch (error) {
      const gatewayError = error instanceof GatewayError ? error : new GatewayError('The generation failed.', { status: 500, type: 'api_error' });
      sse.event('error', JSON.stringify({ type: 'error', error: gatewayError.toEnvelope().error }));
    } finally {
      if (charged) await idempotent?.complete({ status: 200, headers: { 'content-type': SSE_TYPE, ...warningHeaders(charged.warnings) }, body: Buffer.concat(finalEvents).toString('utf8') });
      else await idempotent?.abandon();
      sse.end();
    }
    return reply;
  } catch (error) {
    if (error instanceof GatewayError && !reply.sent) return sendError(reply, error);
    throw error;
  } finally {
    reply.raw.off('close', onClose);
  }
}
