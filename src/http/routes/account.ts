import type { FastifyInstance } from 'fastify';
import type { Store } from '../../store/types.ts';
import { AccountService, accountJson, usageJson } from '../../services/accounts.ts';
import { authenticate } from '../authenticate.ts';

/** A caller's own balance and recent usage, with the same API key it generates with. */
export function registerAccountRoutes(app: FastifyInstance, deps: { store: Store; accounts: AccountService; keyPepper: string }): void {
  app.get('/v1/account', async (request) => {
    const caller = await authenticate(request, deps.store, deps.keyPepper);
    return accountJson(await deps.accounts.getAccount(caller.accountId));
  });
  app.get('/v1/account/usage', async (request) => {
    const caller = await authenticate(request, deps.store, deps.keyPepper);
    const raw = Number((request.query as { limit?: string }).limit ?? 50);
    const limit = Number.isInteger(raw) && raw > 0 ? Math.min(raw, 500) : 50;
    return { object: 'list', data: (await deps.accounts.usage(caller.accountId, limit)).map(usageJson) };
  });
}
