import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, invalidRequest } from '../../domain/errors.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import { fingerprintChatRequest, type ChatCompletionService, type PreparedChatRequest } from '../../services/chat-completion.ts';
import type { IdempotentRun } from '../../services/idempotency.ts';
import { admitAndReserve } from '../billed-request.ts';
import type { Caller } from '../../services/model-access.ts';
import type { Store } from '../../store/types.ts';
import { authenticate } from '../authenticate.ts';
import { chatChunks, chatCompletionBody, type ChatFrame } from '../chat-response.ts';
import { sendError } from '../error-handler.ts';
import { costHeaders, warningHeaders } from '../image-response.ts';
import { openSse } from '../sse.ts';

export interface ChatRouteDeps {
  store: Store;
  chat: ChatCompletionService;
  metrics: Metrics;
  keyPepper: string;
  keepaliveIntervalMs: number;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const SSE_TYPE = 'text/event-stream; charset=utf-8';

/**
 * POST /v1/chat/completions: OpenAI's chat completions, served by the same keys, model allowlists, rate limits and
 * balance as the image endpoints. [Idempotency-Key] → limits → hold → model → settle, answered as JSON or SSE.
 * Everything that can fail before the hold (auth, validation, limits, credit) is a normal JSON error with its status.
 */
export function registerChatRoutes(app: FastifyInstance, deps: ChatRouteDeps): void {
  app.post('/v1/chat/completions', async (request, reply) => {
    let caller: Caller;
    let prepared: PreparedChatRequest;
    try {
      caller = await authenticate(request, deps.store, deps.keyPepper);
      const body = request.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw invalidRequest('The request body must be a JSON object with at least "model" and "messages".', null, 'invalid_body');
      }
      prepared = deps.chat.prepare(caller, body as Record<string, unknown>);
    } catch (error) {
      const body = request.body;
      deps.metrics.chatRejected(body !== null && typeof body === 'object' ? (body as Record<string, unknown>).model : undefined);
      throw error;
    }
    return runChatRequest(request, reply, caller, prepared, deps);
  });
}

async function runChatRequest(request: FastifyRequest, reply: FastifyReply, caller: Caller, prepared: PreparedChatRequest, deps: ChatRouteDeps): Promise<FastifyReply> {
  const reservation = await admitAndReserve(request, reply, caller, prepared, deps.chat, fingerprintChatRequest, () => deps.metrics.chatRejected(prepared.model.id));
  if (reservation.kind === 'replayed') return reservation.reply;
  const { admission, idempotent } = reservation;
  try {
    return await complete(request, reply, prepared, deps, String(request.id), admission.headers, idempotent);
  } finally {
    await admission.release();
  }
}

async function complete(
  request: FastifyRequest,
  reply: FastifyReply,
  prepared: PreparedChatRequest,
  deps: ChatRouteDeps,
  requestId: string,
  limitHeaders: Record<string, string>,
  idempotent: IdempotentRun | undefined,
): Promise<FastifyReply> {
  // Cancelled when the caller goes away before any of the answer reached it: the model is stopped and the hold
  // released. Not once part of a streamed answer was delivered: the completion then runs to its end (bounded by the
  // generation deadline) and is charged at the usage the model reports, so reading an answer and hanging up before
  // settlement cannot make it free (the upstream bills those tokens either way). Not for an idempotent request
  // either: its caller will retry with the key and must find the finished result.
  const disconnect = new AbortController();
  let delivered = false;
  const onClose = () => {
    if (!reply.raw.writableEnded && !idempotent && !delivered) disconnect.abort();
  };
  reply.raw.on('close', onClose);
  const frame: ChatFrame = { id: `chatcmpl-${requestId.replace(/^req_/, '')}`, created: Math.floor(Date.now() / 1000), model: prepared.model.id };

  try {
    if (!prepared.stream) {
      let outcome;
      try {
        outcome = await deps.chat.execute(prepared, requestId, { signal: disconnect.signal });
      } catch (error) {
        await idempotent?.abandon(); // execute charged nothing when it throws
        throw error;
      }
      const headers = costHeaders(outcome.cost, outcome.warnings);
      const body = JSON.stringify(chatCompletionBody(frame, outcome));
      await idempotent?.complete({ status: 200, headers: { 'content-type': JSON_TYPE, ...headers }, body });
      return reply.headers({ ...limitHeaders, ...headers }).type(JSON_TYPE).send(body);
    }

    // The warnings known before the completion; the settled cost is in the usage chunk, never a header.
    const sse = openSse(reply, { ...limitHeaders, ...warningHeaders(prepared.warnings) });
    sse.startKeepalive(deps.keepaliveIntervalMs);
    // Every frame is kept for an idempotent retry, which gets the whole stream back.
    const frames: string[] = [];
    const send = (data: string) => {
      sse.data(data);
      if (idempotent) frames.push(`data: ${data}\n\n`);
    };
    const chunks = chatChunks(frame, prepared.includeUsage);
    let charged: { cost: bigint; warnings: PreparedChatRequest['warnings'] } | undefined;
    try {
      send(chunks.role());
      const outcome = await deps.chat.execute(prepared, requestId, {
        signal: disconnect.signal,
        onDelta: (text, logprobs) => {
          delivered = true;
          send(chunks.content(text, logprobs));
        },
        onReasoningDelta: (text, details) => {
          delivered = true;
          send(chunks.reasoning(text, details));
        },
        onRefusalDelta: (text, logprobs) => {
          delivered = true;
          send(chunks.refusal(text, logprobs));
        },
        onToolCallDelta: (delta) => {
          delivered = true;
          send(chunks.toolCall(delta));
        },
      });
      charged = outcome;
      // Settled before the final chunks: the usage chunk reports what was charged.
      send(chunks.finish(outcome.finishReason, outcome.warnings));
      if (prepared.includeUsage) send(chunks.usage(outcome.usage, outcome.cost));
      send('[DONE]');
      request.log.info({ cost: outcome.cost.toString(), completionTokens: outcome.usage.completionTokens }, 'chat stream settled');
    } catch (error) {
      // After the stream started an error is a chunk carrying the envelope (the SDKs throw on `error`); no [DONE].
      const gatewayError = error instanceof GatewayError ? error : new GatewayError('The completion failed.', { status: 500, type: 'api_error' });
      sse.data(JSON.stringify(gatewayError.toEnvelope()));
    } finally {
      if (charged) await idempotent?.complete({ status: 200, headers: { 'content-type': SSE_TYPE, ...warningHeaders(charged.warnings) }, body: frames.join('') });
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
