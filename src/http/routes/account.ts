import type { FastifyInstance } from 'fastify';
import { type AccountService, accountJson, usageJson } from '../../services/accounts.ts';
import type { Authenticate } from '../authenticate.ts';

/** A caller's own balance and recent usage, with the same API key it generates with. */
export function registerAccountRoutes(app: FastifyInstance, deps: { accounts: AccountService; authenticate: Authenticate }): void {
  const authenticated = { preHandler: deps.authenticate() };
  app.get('/v1/account', authenticated, async (request) => {
    return accountJson(await deps.accounts.getAccount(request.caller.accountId));
  });
  app.get('/v1/account/usage', authenticated, async (request) => {
    const raw = Number((request.query as { limit?: string }).limit ?? 50);
    const limit = Number.isInteger(raw) && raw > 0 ? Math.min(raw, 500) : 50;
    return { object: 'list', data: (await deps.accounts.usage(request.caller.accountId, limit)).map(usageJson) };
  });
}
