import type { FastifyInstance, FastifyRequest } from 'fastify';
import { formatUsd } from '../../domain/money.ts';
import { accountJson } from '../../services/accounts.ts';
import type { CreditCodes } from '../../services/credit-codes.ts';
import type { DashboardQueries } from '../../services/dashboard-queries.ts';
import { userJson, type DashboardUsers } from '../../services/dashboard-users.ts';
import type { ModelAccess } from '../../services/model-access.ts';
import { cachedModelCards } from './models.ts';
import {
  assertSameOrigin,
  clearSessionCookie,
  requireSession,
  sessionToken,
  setSessionCookie,
  targetAccount,
} from '../dashboard-session.ts';

export interface DashboardRouteDeps {
  users: DashboardUsers;
  queries: DashboardQueries;
  creditCodes: CreditCodes;
  version: string;
}

/**
 * The dashboard's JSON API under /dashboard/api (docs/dashboard.md). Same-origin only: never CORS (src/http/cors.ts
 * answers only /v1), an Origin check on every write, no caching of anything personal.
 */
export function registerDashboardRoutes(app: FastifyInstance, deps: DashboardRouteDeps & { models: ModelAccess }): void {
  const { users, queries, creditCodes, models } = deps;
  const card = cachedModelCards();
  const body = (request: FastifyRequest) =>
    request.body && typeof request.body === 'object' ? (request.body as Record<string, unknown>) : {};
  const query = (request: FastifyRequest) => request.query as Record<string, unknown>;
  const keyId = (request: FastifyRequest) => (request.params as { id: string }).id;
  const account = async (request: FastifyRequest) => targetAccount(request, await requireSession(request, users));

  app.register(async (dashboard) => {
    dashboard.addHook('onRequest', async (request, reply) => {
      reply.header('cache-control', 'no-store');
      assertSameOrigin(request);
    });

    dashboard.get('/dashboard/api/config', async () => ({
      signup: users.signupOpen ? 'open' : 'closed',
      version: deps.version,
      admin_sign_in: users.adminSignIn,
    }));
    // Public, for the Models & pricing page: the cards GET /v1/models gives a key without a model allowlist.
    dashboard.get('/dashboard/api/models', async () => ({ object: 'list', data: models.offered().map(card) }));

    dashboard.post('/dashboard/api/session', async (request, reply) => {
      const input = body(request);
      const opened = 'admin_token' in input ? await users.signInOperator(input, request.ip) : await users.signIn(input, request.ip);
      setSessionCookie(request, reply, opened);
      return { user: userJson(opened.user) };
    });
    dashboard.get('/dashboard/api/session', async (request) => ({ user: userJson(await requireSession(request, users)) }));
    dashboard.delete('/dashboard/api/session', async (request, reply) => {
      await users.signOut(sessionToken(request));
      clearSessionCookie(request, reply);
      return reply.code(204).send();
    });
    dashboard.post('/dashboard/api/signup', async (request, reply) => {
      const opened = await users.signUp(body(request), request.ip);
      setSessionCookie(request, reply, opened);
      return reply.code(201).send({ user: userJson(opened.user) });
    });
    dashboard.post('/dashboard/api/password', async (request, reply) => {
      await users.changePassword(await requireSession(request, users), body(request), request.ip);
      return reply.code(204).send();
    });

    dashboard.get('/dashboard/api/overview', async (request) => queries.overview(await account(request)));
    dashboard.get('/dashboard/api/keys', async (request) => queries.keys(await account(request)));
    dashboard.post('/dashboard/api/keys', async (request, reply) =>
      reply.code(201).send(await queries.createKey(await account(request), body(request))),
    );
    dashboard.post('/dashboard/api/keys/:id/rotate', async (request) => queries.rotateKey(await account(request), keyId(request)));
    dashboard.post('/dashboard/api/keys/:id/revoke', async (request) => queries.revokeKey(await account(request), keyId(request)));
    dashboard.delete('/dashboard/api/keys/:id', async (request) => queries.deleteKey(await account(request), keyId(request)));
    dashboard.get('/dashboard/api/usage', async (request) => queries.usage(await account(request), query(request)));
    dashboard.get('/dashboard/api/usage.csv', async (request, reply) => {
      const csv = await queries.usageCsv(await account(request), query(request));
      return reply
        .header('content-type', 'text/csv; charset=utf-8')
        .header('content-disposition', 'attachment; filename="deepshi-usage.csv"')
        .send(csv);
    });
    dashboard.get('/dashboard/api/ledger', async (request) => queries.ledger(await account(request), query(request)));
    dashboard.post('/dashboard/api/credit-codes/redeem', async (request) => {
      const redeemed = await creditCodes.redeem(await account(request), body(request).code, request.ip);
      return { account: accountJson(redeemed.account), amount: formatUsd(redeemed.amount) };
    });
    dashboard.post('/dashboard/api/playground-key', async (request) => {
      const session = await requireSession(request, users);
      const issued = await users.playgroundKey(session, targetAccount(request, session));
      return { key: issued.key, expires_at: Math.floor(issued.expiresAt / 1000) };
    });
  });
}
