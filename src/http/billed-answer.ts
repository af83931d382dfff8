import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Caller } from '../domain/caller.ts';
import { GatewayError } from '../domain/errors.ts';
import type { Nanos } from '../domain/money.ts';
import type { Warning } from '../domain/warnings.ts';
import type { Admission } from '../services/billed-work.ts';
import { readIdempotencyKey, type IdempotencyService, type IdempotentRun, type StoredResponse } from '../services/idempotency.ts';
import { sendError } from './error-handler.ts';
import { costHeaders, warningHeaders } from './image-response.ts';
import { openSse } from './sse.ts';

/** What a billed endpoint's service offers for the steps before its hold (images and chat alike). */
export interface ReservingService<Prepared> {
  readonly idempotency: IdempotencyService;
  admit(caller: Caller, prepared: Prepared, requestId: string): Promise<Admission>;
  reserve(caller: Caller, prepared: Prepared, requestId: string): Promise<void>;
}

/** What was charged: the cost headers of the answer and of its idempotent replay. */
export interface Charged {
  cost: Nanos;
  warnings: Warning[];
}

/** An SSE answer under way. Frames marked `kept` are what an idempotent retry gets back. */
export interface AnswerStream {
  /** `event: <type>` with JSON given as byte parts (image payloads go out as the bytes they arrived in). */
  event(type: string, data: Buffer[], kept?: boolean): void;
  /** A bare `data:` frame. */
  data(text: string, kept?: boolean): void;
}

/** How one billed endpoint answers; the runner does the rest (see answerBilled). */
export interface BilledAnswer<Prepared> {
  service: ReservingService<Prepared>;
  /** "The same request" for an Idempotency-Key. */
  fingerprint: (prepared: Prepared) => string;
  /** Counts a request turned away before its work started (bad Idempotency-Key, 409/422, 429, 402). */
  onRejected: () => void;
  stream: boolean;
  /** Request warnings, sent as headers at the start of a stream. */
  warnings: Warning[];
  keepaliveIntervalMs: number;
  /**
   * A JSON answer: runs the work and returns the body as byte parts. Throws (a GatewayError) when nothing was charged.
   * With an Idempotency-Key it may save the response with the charge itself (IdempotentRun.atSettlement).
   */
  json(signal: AbortSignal, idempotent: IdempotentRun | undefined): Promise<Charged & { parts: Buffer[] }>;
  /** An SSE answer: runs the work, writing its events. Throws when nothing was charged. */
  sse(signal: AbortSignal, stream: AnswerStream): Promise<Charged>;
  /** Frames a failure once the stream has started (image streams send an `error` event, chat a `data:` chunk), not kept. */
  sseError(stream: AnswerStream, error: unknown): void;
  /**
   * Whether a caller hanging up still stops the work (default: until the answer is complete). Chat says no once part
   * of a streamed answer was delivered, so it is charged for what the upstream bills anyway.
   */
  stopOnDisconnect?: () => boolean;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** What an Idempotency-Key retry of a JSON answer gets back: the body and its cost headers. */
export function jsonStoredResponse(parts: Buffer[], headers: Record<string, string>): StoredResponse {
  return { status: 200, headers: { 'content-type': JSON_TYPE, ...headers }, body: Buffer.concat(parts).toString('utf8') };
}
const SSE_TYPE = 'text/event-stream; charset=utf-8';

/**
 * The one http-side path of a billed request, for images, edits and chat: [Idempotency-Key] → limits → hold (each
 * refusal a normal JSON error, what earlier steps took given back) → the work, answered as JSON or SSE → the
 * idempotent response saved when something was charged, forgotten otherwise. The admission's in-flight slots are
 * given back however the request ends (success, error, stream end, client gone).
 *
 * The caller going away before the answer is complete cancels the work (the upstream call is abandoned, the hold
 * released), except for an idempotent request: its caller will retry with the key and must find the finished result.
 */
export async function answerBilled<Prepared>(
  request: FastifyRequest,
  reply: FastifyReply,
  caller: Caller,
  prepared: Prepared,
  answer: BilledAnswer<Prepared>,
): Promise<FastifyReply> {
  const started = await admitAndReserve(request, reply, caller, prepared, answer);
  if (started.kind === 'replayed') return started.reply;
  const { admission, idempotent } = started;
  try {
    return await respond(reply, answer, admission.headers, idempotent);
  } finally {
    await admission.release();
  }
}

/** What admitAndReserve needs: the service's steps, the request's fingerprint, and a count of refusals. */
export type Reserving<Prepared> = Pick<BilledAnswer<Prepared>, 'service' | 'fingerprint' | 'onRejected'>;

/**
 * The steps of a billed request before its work, shared by answerBilled and the async job submission:
 * [Idempotency-Key] → limits → hold. A replay is answered here; a refusal gives back what earlier steps took and throws.
 */
export async function admitAndReserve<Prepared>(
  request: FastifyRequest,
  reply: FastifyReply,
  caller: Caller,
  prepared: Prepared,
  reserving: Reserving<Prepared>,
): Promise<{ kind: 'replayed'; reply: FastifyReply } | { kind: 'reserved'; admission: Admission; idempotent: IdempotentRun | undefined }> {
  const requestId = String(request.id);
  let idempotent: IdempotentRun | undefined;
  let admission: Admission | undefined;
  try {
    const idempotencyKey = readIdempotencyKey(request.headers['idempotency-key']);
    if (idempotencyKey !== undefined) {
      const start = await reserving.service.idempotency.begin(caller, idempotencyKey, reserving.fingerprint(prepared), requestId);
      if (start.kind === 'replay') {
        // Not counted as a request of the model: nothing was generated or charged (http_requests_total has it).
        const replayed = reply
          .code(start.response.status)
          .headers({ ...start.response.headers, 'idempotent-replayed': 'true', 'x-deepshi-original-request-id': start.originalRequestId })
          .send(start.response.body);
        return { kind: 'replayed', reply: replayed };
      }
      idempotent = start;
    }
    admission = await reserving.service.admit(caller, prepared, requestId);
    await reserving.service.reserve(caller, prepared, requestId);
    return { kind: 'reserved', admission, idempotent };
  } catch (error) {
    reserving.onRejected();
    await admission?.release();
    await idempotent?.abandon();
    throw error;
  }
}

async function respond<Prepared>(
  reply: FastifyReply,
  answer: BilledAnswer<Prepared>,
  limitHeaders: Record<string, string>,
  idempotent: IdempotentRun | undefined,
): Promise<FastifyReply> {
  const disconnect = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableEnded && !idempotent && (answer.stopOnDisconnect?.() ?? true)) disconnect.abort();
  };
  reply.raw.on('close', onClose);
  try {
    if (!answer.stream) {
      let charged: Charged & { parts: Buffer[] };
      try {
        charged = await answer.json(disconnect.signal, idempotent);
      } catch (error) {
        await idempotent?.abandon(); // the work charged nothing when it throws
        throw error;
      }
      const headers = costHeaders(charged.cost, charged.warnings);
      const { parts } = charged;
      // Saved already when the work saved it with the charge (then this does nothing).
      await idempotent?.complete(jsonStoredResponse(parts, headers));
      const length = parts.reduce((total, part) => total + part.length, 0);
      // A stream of the parts (with its length declared) rather than one concatenated buffer: see imageResponseParts.
      const body = parts.length === 1 ? parts[0] : Readable.from(parts, { objectMode: false });
      return reply
        .headers({ ...limitHeaders, ...headers, 'content-length': String(length) })
        .type(JSON_TYPE)
        .send(body);
    }

    // The warnings known before the work; the settled cost is in the final event or usage chunk, never a header.
    const sse = openSse(reply, { ...limitHeaders, ...warningHeaders(answer.warnings) });
    sse.startKeepalive(answer.keepaliveIntervalMs);
    const kept: Buffer[] = [];
    const stream: AnswerStream = {
      event: (type, data, keep = true) => {
        const frame = sse.eventParts(type, data);
        if (idempotent && keep) kept.push(...frame);
      },
      data: (text, keep = true) => {
        sse.data(text);
        if (idempotent && keep) kept.push(Buffer.from(`data: ${text}\n\n`));
      },
    };
    let charged: Charged | undefined;
    try {
      charged = await answer.sse(disconnect.signal, stream);
    } catch (error) {
      // After the stream started an error is a frame carrying the envelope (the SDKs throw on it).
      answer.sseError(stream, error);
    } finally {
      if (charged)
        await idempotent?.complete({
          status: 200,
          headers: { 'content-type': SSE_TYPE, ...warningHeaders(charged.warnings) },
          body: Buffer.concat(kept).toString('utf8'),
        });
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
