import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { GatewayError } from '../../domain/errors.ts';
import { type AccountService, accountJson, keyJson, ledgerJson } from '../../services/accounts.ts';

/**
 * Operator API under /admin/v1, mounted only when DEEPSHI_ADMIN_TOKEN is set. Customer keys never work here.
 * Amounts are USD, accepted as decimal strings or numbers, and returned as exact decimal strings.
 */
export function registerAdminRoutes(
  app: FastifyInstance,
  deps: {
    accounts: AccountService;
    adminToken: string;
    operatorSession?: (request: FastifyRequest) => Promise<boolean>;
    extraRoutes?: (admin: FastifyInstance) => void;
  },
): void {
  const expected = digest(deps.adminToken);
  const requireAdmin = async (request: FastifyRequest) => {
    // Without an Authorization header, an operator's dashboard session (cookie, same-origin writes) stands in for the token.
    if (request.headers.authorization === undefined && deps.operatorSession && (await deps.operatorSession(request))) return;
    const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '');
    // Compare digests so the comparison is constant-time whatever the lengths.
    if (!match || !timingSafeEqual(digest(match[1]), expected)) {
      throw new GatewayError('This endpoint needs the operator token: Authorization: Bearer $DEEPSHI_ADMIN_TOKEN.', {
        status: 401,
        type: 'invalid_request_error',
        code: 'invalid_admin_token',
      });
    }
  };
  const body = (request: FastifyRequest) =>
    request.body && typeof request.body === 'object' ? (request.body as Record<string, unknown>) : {};
  const id = (request: FastifyRequest) => (request.params as { id: string }).id;
  const limit = (request: FastifyRequest) => {
    const raw = Number((request.query as { limit?: string }).limit ?? 100);
    return Number.isInteger(raw) && raw > 0 ? Math.min(raw, 1000) : 100;
  };

  app.register(async (admin) => {
    admin.addHook('onRequest', requireAdmin);
    admin.post('/admin/v1/accounts', async (request, reply) =>
      reply.code(201).send(accountJson(await deps.accounts.createAccount(body(request)))),
    );
    admin.get('/admin/v1/accounts/:id', async (request) => {
      const account = await deps.accounts.getAccount(id(request));
      const keys = await deps.accounts.listKeys(account.id);
      return { ...accountJson(account), keys: keys.map((key) => keyJson(key)) };
    });
    admin.post('/admin/v1/accounts/:id/credits', async (request) =>
      accountJson(await deps.accounts.addCredits(id(request), body(request))),
    );
    admin.get('/admin/v1/accounts/:id/ledger', async (request) => ({
      object: 'list',
      data: (await deps.accounts.ledger(id(request), limit(request))).map(ledgerJson),
    }));
    admin.post('/admin/v1/keys', async (request, reply) => {
      const { record, key } = await deps.accounts.createKey(body(request));
      return reply.code(201).send(keyJson(record, key));
    });
    admin.post('/admin/v1/keys/:id/rotate', async (request) => {
      const { record, key } = await deps.accounts.rotateKey(id(request));
      return keyJson(record, key);
    });
    admin.post('/admin/v1/keys/:id/revoke', async (request) => keyJson(await deps.accounts.revokeKey(id(request))));
    admin.post('/admin/v1/keys/:id/models', async (request) =>
      keyJson(await deps.accounts.setKeyModels(id(request), body(request).models)),
    );
    admin.post('/admin/v1/keys/:id/limits', async (request) => keyJson(await deps.accounts.setKeyLimits(id(request), body(request))));
    admin.delete('/admin/v1/keys/:id', async (request) => {
      await deps.accounts.deleteKey(id(request));
      return { id: id(request), object: 'api_key', deleted: true };
    });
    deps.extraRoutes?.(admin);
  });
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
