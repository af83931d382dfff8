import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Admission } from '../limits/limiter.ts';
import { readIdempotencyKey, type IdempotencyService, type IdempotentRun } from '../services/idempotency.ts';
import type { Caller } from '../services/model-access.ts';

/** What a billed endpoint's service offers for the steps before its hold (images and chat alike). */
export interface ReservingService<Prepared> {
  readonly idempotency: IdempotencyService;
  admit(caller: Caller, prepared: Prepared, requestId: string): Promise<Admission>;
  reserve(caller: Caller, prepared: Prepared, requestId: string): Promise<void>;
}

export type Reservation =
  | { kind: 'replayed'; reply: FastifyReply }
  | { kind: 'reserved'; admission: Admission; idempotent: IdempotentRun | undefined };

/**
 * The steps every billed request takes before its work starts: an Idempotency-Key (a finished first attempt is
 * replayed at once, nothing generated or charged), the per-key and per-model limits, then the hold. When a step
 * turns the request away (bad key, 409/422, 429, 402), what earlier steps took is given back, `onRejected` is told,
 * and the error goes on to the caller. The caller releases `admission` once the request is answered.
 */
export async function admitAndReserve<Prepared>(
  request: FastifyRequest,
  reply: FastifyReply,
  caller: Caller,
  prepared: Prepared,
  service: ReservingService<Prepared>,
  fingerprint: (prepared: Prepared) => string,
  onRejected: () => void,
): Promise<Reservation> {
  const requestId = String(request.id);
  let idempotent: IdempotentRun | undefined;
  let admission: Admission | undefined;
  try {
    const idempotencyKey = readIdempotencyKey(request.headers['idempotency-key']);
    if (idempotencyKey !== undefined) {
      const start = await service.idempotency.begin(caller, idempotencyKey, fingerprint(prepared), requestId);
      if (start.kind === 'replay') {
        // Not counted as a request of the model: nothing was generated or charged (http_requests_total has it).
        return {
          kind: 'replayed',
          reply: reply
            .code(start.response.status)
            .headers({ ...start.response.headers, 'idempotent-replayed': 'true', 'x-deepshi-original-request-id': start.originalRequestId })
            .send(start.response.body),
        };
      }
      idempotent = start;
    }
    admission = await service.admit(caller, prepared, requestId);
    await service.reserve(caller, prepared, requestId);
    return { kind: 'reserved', admission, idempotent };
  } catch (error) {
    onRejected();
    await admission?.release();
    await idempotent?.abandon();
    throw error;
  }
}
