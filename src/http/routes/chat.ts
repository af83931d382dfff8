import type { FastifyInstance, FastifyRequest } from 'fastify';
import { GatewayError, invalidRequest } from '../../domain/errors.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import { fingerprintChatRequest, type ChatCompletionService, type PreparedChatRequest } from '../../services/chat-completion.ts';
import type { Authenticate } from '../authenticate.ts';
import { answerBilled } from '../billed-answer.ts';
import { chatChunks, chatCompletionBody, type ChatFrame } from '../chat-response.ts';

export interface ChatRouteDeps {
  chat: ChatCompletionService;
  metrics: Metrics;
  authenticate: Authenticate;
  keepaliveIntervalMs: number;
}

/**
 * POST /v1/chat/completions: OpenAI's chat completions, served by the same keys, model allowlists, rate limits and
 * balance as the image endpoints. [Idempotency-Key] → limits → hold → model → settle (answerBilled), answered as JSON
 * or SSE. Everything that can fail before the hold (auth, validation, limits, credit) is a normal JSON error.
 *
 * A caller hanging up before any of the answer reached it stops the model and releases the hold. Not once part of a
 * streamed answer was delivered: the completion then runs to its end (bounded by the generation deadline) and is
 * charged at the usage the model reports, so reading an answer and hanging up before settlement cannot make it free
 * (the upstream bills those tokens either way).
 */
export function registerChatRoutes(app: FastifyInstance, deps: ChatRouteDeps): void {
  const refused = (request: FastifyRequest) => {
    const body = request.body;
    deps.metrics.chatRejected(body !== null && typeof body === 'object' ? (body as Record<string, unknown>).model : undefined);
  };
  app.post('/v1/chat/completions', { preHandler: deps.authenticate(refused) }, async (request, reply) => {
    let prepared: PreparedChatRequest;
    try {
      const body = request.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw invalidRequest('The request body must be a JSON object with at least "model" and "messages".', null, 'invalid_body');
      }
      prepared = deps.chat.prepare(request.caller, body as Record<string, unknown>);
    } catch (error) {
      refused(request);
      throw error;
    }
    const requestId = String(request.id);
    const frame: ChatFrame = {
      id: `chatcmpl-${requestId.replace(/^req_/, '')}`,
      created: Math.floor(Date.now() / 1000),
      model: prepared.model.id,
      ...(prepared.request.legacyFunctions ? { legacyFunctions: true } : {}),
    };
    let delivered = false;
    return answerBilled(request, reply, request.caller, prepared, {
      service: deps.chat,
      fingerprint: fingerprintChatRequest,
      onRejected: () => deps.metrics.chatRejected(prepared.model.id),
      stream: prepared.stream,
      warnings: prepared.warnings,
      keepaliveIntervalMs: deps.keepaliveIntervalMs,
      stopOnDisconnect: () => !delivered,
      json: async (signal) => {
        const outcome = await deps.chat.execute(prepared, requestId, { signal });
        return { ...outcome, parts: [Buffer.from(JSON.stringify(chatCompletionBody(frame, outcome)))] };
      },
      // Every frame is kept for an idempotent retry, which gets the whole stream back.
      sse: async (signal, stream) => {
        const chunks = chatChunks(frame, prepared.includeUsage);
        // Choice 0 opens at once (the caller's first byte); any other opens with its first piece, so a choice the
        // upstream never answers (it may answer fewer than `n`) never appears, rather than opening and never finishing.
        const opened = new Set<number>();
        const open = (index: number) => {
          if (opened.has(index)) return;
          opened.add(index);
          stream.data(chunks.role(index));
        };
        open(0);
        const outcome = await deps.chat.execute(prepared, requestId, {
          signal,
          onDelta: (index, text, logprobs) => {
            delivered = true;
            open(index);
            stream.data(chunks.content(index, text, logprobs));
          },
          onReasoningDelta: (index, text, details) => {
            delivered = true;
            open(index);
            stream.data(chunks.reasoning(index, text, details));
          },
          onRefusalDelta: (index, text, logprobs) => {
            delivered = true;
            open(index);
            stream.data(chunks.refusal(index, text, logprobs));
          },
          onToolCallDelta: (index, delta) => {
            delivered = true;
            const piece = chunks.toolCall(index, delta);
            if (piece === undefined) return;
            open(index);
            stream.data(piece);
          },
        });
        // Settled before the final chunks: the usage chunk reports what was charged. Each choice's finish, in index order.
        for (const [index, choice] of outcome.choices.entries()) {
          open(index);
          stream.data(chunks.finish(index, choice.finishReason, index === outcome.choices.length - 1 ? outcome.warnings : []));
        }
        if (prepared.includeUsage) stream.data(chunks.usage(outcome.usage, outcome.cost));
        stream.data('[DONE]');
        request.log.info({ cost: outcome.cost.toString(), completionTokens: outcome.usage.completionTokens }, 'chat stream settled');
        return outcome;
      },
      // After the stream started an error is a chunk carrying the envelope (the SDKs throw on `error`); no [DONE].
      sseError: (stream, error) => {
        const gatewayError =
          error instanceof GatewayError ? error : new GatewayError('The completion failed.', { status: 500, type: 'api_error' });
        stream.data(JSON.stringify(gatewayError.toEnvelope()), false);
      },
    });
  });
}
