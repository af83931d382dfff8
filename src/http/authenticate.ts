import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Caller } from '../domain/caller.ts';
import type { AccountService } from '../services/accounts.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated key; set by the authentication hook on the API routes, before their handler runs. */
    caller: Caller;
  }
}

/** A hook that authenticates the request; `onRefused` is told before the 401 goes out (per-endpoint metrics). */
export type Authenticate = (onRefused?: (request: FastifyRequest) => void) => (request: FastifyRequest) => Promise<void>;

/**
 * The API routes' authentication: a hook that sets `request.caller` from the Bearer key (AccountService.authenticate)
 * or answers 401. JSON routes run it as a preHandler (after the body is parsed, so a malformed body stays a 400);
 * uploads run it onRequest, before a byte of the body is read.
 */
export function registerAuthentication(app: FastifyInstance, accounts: Pick<AccountService, 'authenticate'>): Authenticate {
  app.decorateRequest('caller', undefined as unknown as Caller);
  return (onRefused) => async (request) => {
    try {
      request.caller = await accounts.authenticate(request.headers.authorization);
    } catch (error) {
      onRefused?.(request);
      throw error;
    }
  };
}
