import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, invalidRequest } from '../../domain/errors.ts';
import type { Store } from '../../store/types.ts';
import type { Caller, ImageGenerationService, PreparedImageRequest } from '../../services/image-generation.ts';
import { authenticate } from '../authenticate.ts';
import { sendError } from '../error-handler.ts';
import { costHeaders, imageResponseBody, usageObject } from '../image-response.ts';
import { SseWriter } from '../sse.ts';

export interface ImageRouteDeps {
  store: Store;
  images: ImageGenerationService;
  keyPepper: string;
  keepaliveIntervalMs: number;
}

export function registerImageRoutes(app: FastifyInstance, deps: ImageRouteDeps): void {
  app.post('/v1/images/generations', async (request, reply) => {
    const caller = await authenticate(request, deps.store, deps.keyPepper);
    const body = request.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw invalidRequest('The request body must be a JSON object with at least "model" and "prompt".', null, 'invalid_body');
    }
    const prepared = deps.images.prepare(caller, body as Record<string, unknown>, { endpoint: 'images.generations' });
    return runImageRequest(request, reply, caller, prepared, deps, 'image_generation');
  });
}

/**
 * Shared by generations and edits: hold → generate → settle, answered as JSON or as an SSE stream.
 * Everything that can fail before the hold (auth, validation, credits) fails as a normal JSON error.
 */
export async function runImageRequest(
  request: FastifyRequest,
  reply: FastifyReply,
  caller: Caller,
  prepared: PreparedImageRequest,
  deps: ImageRouteDeps,
  eventPrefix: 'image_generation' | 'image_edit',
): Promise<FastifyReply> {
  const requestId = String(request.id);
  await deps.images.reserve(caller, prepared, requestId);

  // Cancelled when the caller goes away before the answer is ready: the upstream work is abandoned, the hold released.
  const disconnect = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableEnded) disconnect.abort();
  };
  reply.raw.on('close', onClose);
  const created = Math.floor(Date.now() / 1000);

  try {
    if (!prepared.stream) {
      const outcome = await deps.images.execute(prepared, requestId, { signal: disconnect.signal });
      reply.headers(costHeaders(outcome.cost, outcome.warnings));
      return reply
        .type('application/json; charset=utf-8')
        .send(imageResponseBody(outcome, { model: prepared.model.id, created, responseFormat: prepared.responseFormat }));
    }

    reply.hijack();
    const sse = new SseWriter(reply.raw, { 'x-request-id': requestId, ...(prepared.warnings.length ? costHeaders(0n, prepared.warnings) : {}) });
    sse.startKeepalive(deps.keepaliveIntervalMs);
    const outputFormat = prepared.request.outputFormat ?? prepared.model.native_output_format;
    const extras = (size: string) =>
      `"created_at":${created},"size":"${size}","output_format":"${outputFormat}"` +
      (typeof prepared.request.params.quality === 'string' ? `,"quality":${JSON.stringify(prepared.request.params.quality)}` : '') +
      (typeof prepared.request.params.background === 'string' ? `,"background":${JSON.stringify(prepared.request.params.background)}` : '');
    const perImageCost = prepared.quote.perImage;
    let sent = 0;
    try {
      const outcome = await deps.images.execute(prepared, requestId, {
        signal: disconnect.signal,
        onPartialImage: (partial) => {
          sse.event(
            `${eventPrefix}.partial_image`,
            `{"type":"${eventPrefix}.partial_image","b64_json":"${partial.base64}","partial_image_index":${partial.partialImageIndex},"image_index":${partial.imageIndex},${extras(`${prepared.request.width}x${prepared.request.height}`)}}`,
          );
        },
        onImage: (image) => {
          // Each image's event carries the cost of that image; the first also carries the input images' charge,
          // so the events always sum to what is settled, even when a later image fails.
          sent++;
          const cost = perImageCost + (sent === 1 ? prepared.quote.inputs : 0n);
          sse.event(
            `${eventPrefix}.completed`,
            `{"type":"${eventPrefix}.completed","b64_json":"${image.base64}","index":${image.index},${extras(`${image.width}x${image.height}`)},"usage":${JSON.stringify(usageObject(undefined, cost))}}`,
          );
        },
      });
      request.log.info({ cost: outcome.cost.toString(), images: outcome.images.length }, 'stream settled');
      if (outcome.partialFailure) {
        const reason = outcome.partialFailure;
        const message = `Only ${outcome.images.length} of ${prepared.request.n} images could be generated; you were charged for ${outcome.images.length}. ${reason.message}`;
        sse.event('error', JSON.stringify({ type: 'error', error: { ...reason.toEnvelope().error, message } }));
      }
    } catch (error) {
      const gatewayError = error instanceof GatewayError ? error : new GatewayError('The generation failed.', { status: 500, type: 'api_error' });
      sse.event('error', JSON.stringify({ type: 'error', error: gatewayError.toEnvelope().error }));
    } finally {
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
