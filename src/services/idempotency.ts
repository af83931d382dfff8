import type { Logger } from 'pino';
import { GatewayError, invalidRequest } from '../domain/errors.ts';
import type { SettleInput, Store, StoredResponse } from '../store/types.ts';

export type { StoredResponse };
import type { Caller } from '../domain/caller.ts';

/** How long a key remembers its request and response (Stripe, Checkout.com, PPRO: 24 h). */
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
/** Asked of a duplicate that arrives while the first request still runs. */
export const IN_PROGRESS_RETRY_AFTER_S = 2;

/** The request that owns the key: it saves its response when it charged, or forgets the key when it charged nothing. */
export interface IdempotentRun {
  kind: 'run';
  complete(response: StoredResponse): Promise<void>;
  abandon(): Promise<void>;
  /**
   * The response to save in the settling transaction itself (Store.settleReservation's `idempotency`), so that a
   * charge and its replayable response are committed together; complete() and abandon() do nothing afterwards.
   */
  atSettlement(response: StoredResponse): NonNullable<SettleInput['idempotency']>;
}

export interface IdempotentReplay {
  kind: 'replay';
  response: StoredResponse;
  originalRequestId: string;
}

/**
 * Idempotency-Key with Stripe's semantics, scoped to the account, stored in the database so every instance sees it:
 * - the first request claims the key (one arbitrated insert) and runs;
 * - a retry with the same key and the same request within 24 h gets the saved response back (status, body with the
 *   images, cost headers) without generating or charging again;
 * - the same key with a different request is refused (422 idempotency_key_reused);
 * - a duplicate arriving while the first still runs gets 409 with Retry-After (the OpenAI SDKs retry 409).
 * Only a request that charged something saves its response. One that charged nothing (refused by limits or credit,
 * failed upstream, timed out) forgets its claim, so a retry with the same key runs afresh: it cannot pay twice.
 * A claim whose instance died is taken over once its lock (generation deadline + grace) has passed and its hold is
 * no longer held, so a retry is never stuck on a crashed instance.
 */
export class IdempotencyService {
  constructor(private readonly deps: { store: Store; logger: Logger; lockMs: number }) {}

  async begin(caller: Caller, key: string, fingerprint: string, requestId: string): Promise<IdempotentRun | IdempotentReplay> {
    const { store } = this.deps;
    const now = Date.now();
    const lockedUntil = now + this.deps.lockMs;
    const claim = await store.claimIdempotencyKey({
      accountId: caller.accountId,
      key,
      requestHash: fingerprint,
      requestId,
      now,
      lockedUntil,
      expiresAt: now + IDEMPOTENCY_TTL_MS,
    });
    if (claim.claimed) return this.run(caller.accountId, key, requestId);

    const existing = claim.existing;
    if (existing.requestHash !== fingerprint) {
      throw new GatewayError(
        'This Idempotency-Key was already used with different request parameters in the last 24 hours. Send a new key for a new request.',
        { status: 422, type: 'invalid_request_error', code: 'idempotency_key_reused', param: null },
      );
    }
    if (existing.status === 'completed' && existing.response) {
      return { kind: 'replay', response: existing.response, originalRequestId: existing.requestId };
    }
    if (existing.lockedUntil > now) throw inProgress();

    // The request holding the key overran its lock: its instance died, or it is about to be swept.
    const previous = await store.getRequest(existing.requestId);
    if (previous?.status === 'held') throw inProgress(); // the sweeper releases it shortly
    if (previous?.status === 'settled') {
      // Charged, but its instance stopped between settling and saving the response: never charge again.
      const lost = lostResponse(existing.requestId);
      await store.completeIdempotencyKey(caller.accountId, key, existing.requestId, lost);
      this.deps.logger.error({ requestId: existing.requestId }, 'idempotent request was charged but its response was lost');
      const saved = await store.getIdempotencyKey(caller.accountId, key);
      if (saved?.status === 'completed' && saved.response)
        return { kind: 'replay', response: saved.response, originalRequestId: saved.requestId };
      throw inProgress();
    }
    // Released or never reserved: nothing was charged, so this retry runs it again.
    const took = await store.takeOverIdempotencyKey({
      accountId: caller.accountId,
      key,
      fromRequestId: existing.requestId,
      requestId,
      lockedUntil,
    });
    if (!took) throw inProgress();
    this.deps.logger.warn(
      { requestId, previousRequestId: existing.requestId },
      'idempotency key taken over from a request that never finished',
    );
    return this.run(caller.accountId, key, requestId);
  }

  /** Deletes keys older than 24 h; run by the sweeper. */
  async reap(now = Date.now()): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = await this.deps.store.deleteExpiredIdempotencyKeys(now, 1000);
      total += deleted;
      if (deleted < 1000) return total;
    }
  }

  private run(accountId: string, key: string, requestId: string): IdempotentRun {
    const { store, logger } = this.deps;
    let done = false;
    return {
      kind: 'run',
      complete: async (response) => {
        if (done) return;
        done = true;
        // A failure here leaves the key running; once its lock passes a retry finds the request settled and gets an
        // explicit "response lost" error rather than a second charge.
        const saved = await store.completeIdempotencyKey(accountId, key, requestId, response).catch((error: unknown) => {
          logger.error({ err: error, requestId }, 'could not save the idempotent response');
          return true;
        });
        if (!saved) logger.error({ requestId }, 'idempotency key no longer held by this request; response not saved');
      },
      atSettlement: (response) => {
        done = true;
        return { accountId, key, response };
      },
      abandon: async () => {
        if (done) return;
        done = true;
        await store.releaseIdempotencyKey(accountId, key, requestId).catch((error: unknown) => {
          logger.error({ err: error, requestId }, 'could not release an idempotency key; it frees itself after its lock');
        });
      },
    };
  }
}

/** The Idempotency-Key header: absent → undefined; 1–255 visible ASCII characters, else 400. */
export function readIdempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header[0] : header;
  if (typeof value !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(value)) {
    throw invalidRequest(
      'The Idempotency-Key header must be 1 to 255 visible ASCII characters (a UUID is a good choice).',
      null,
      'invalid_idempotency_key',
    );
  }
  return value;
}

function inProgress(): GatewayError {
  return new GatewayError(
    'A request with this Idempotency-Key is still being processed. Retry after the time in Retry-After to get its result.',
    {
      status: 409,
      type: 'invalid_request_error',
      code: 'idempotency_request_in_progress',
      headers: { 'retry-after': String(IN_PROGRESS_RETRY_AFTER_S) },
    },
  );
}

function lostResponse(requestId: string): StoredResponse {
  return {
    status: 500,
    headers: { 'content-type': 'application/json; charset=utf-8', 'x-should-retry': 'false' },
    body: JSON.stringify(
      new GatewayError(
        `The original request with this Idempotency-Key (${requestId}) was charged, but the server handling it stopped before its response was saved. Contact the operator with that request id; retrying with this key will not charge again.`,
        { status: 500, type: 'api_error', code: 'idempotent_response_lost' },
      ).toEnvelope(),
    ),
  };
}
