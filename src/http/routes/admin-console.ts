import type { FastifyInstance, FastifyRequest } from 'fastify';
import { GatewayError, invalidRequest } from '../../domain/errors.ts';
import { parseUsd, type Nanos } from '../../domain/money.ts';
import { accountJson, type AccountService } from '../../services/accounts.ts';
import { creditCodeJson, type CreditCodes } from '../../services/credit-codes.ts';
import { userJson, type DashboardUsers } from '../../services/dashboard-users.ts';
import type { OperatorConsole } from '../../services/operator-console.ts';

export interface AdminConsoleDeps {
  accounts: AccountService;
  users: DashboardUsers;
  creditCodes: CreditCodes;
  console: OperatorConsole;
}

/**
 * The operator console's routes (docs/dashboard.md), registered inside the /admin/v1 scope of routes/admin.ts so they
 * take the same authentication: the admin token or an operator's dashboard session.
 */
export function registerAdminConsoleRoutes(admin: FastifyInstance, deps: AdminConsoleDeps): void {
  const body = (request: FastifyRequest) =>
    request.body && typeof request.body === 'object' ? (request.body as Record<string, unknown>) : {};
  const query = (request: FastifyRequest) => request.query as Record<string, unknown>;
  const limit = (request: FastifyRequest, fallback: number) => {
    const raw = query(request).limit;
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 1 || value > 500)
      throw invalidRequest("'limit' must be a whole number from 1 to 500.", 'limit');
    return value;
  };

  admin.get('/admin/v1/accounts', async (request) => {
    const q = query(request).q;
    const text = typeof q === 'string' ? q.trim().slice(0, 200) : '';
    return { object: 'list', data: (await deps.accounts.search(text, limit(request, 100))).map(accountJson) };
  });

  admin.post('/admin/v1/accounts/:id/debits', async (request) => {
    const input = body(request);
    let amount: Nanos;
    try {
      amount = parseUsd(input.amount);
    } catch (error) {
      throw invalidRequest(`'amount' ${(error as Error).message}; send USD such as "10" or "2.50".`, 'amount');
    }
    if (amount <= 0n) throw invalidRequest("'amount' must be greater than zero.", 'amount');
    const note = input.note === undefined || input.note === null ? null : input.note;
    if (note !== null && (typeof note !== 'string' || note.length > 500))
      throw invalidRequest("'note' must be a string of at most 500 characters.", 'note');
    const id = (request.params as { id: string }).id;
    const result = await deps.accounts.debit(id, amount, note);
    if (result.outcome === 'unknown') {
      throw new GatewayError(`No account with id "${id.slice(0, 80)}".`, { status: 404, type: 'invalid_request_error', code: 'not_found' });
    }
    if (result.outcome === 'insufficient') {
      throw invalidRequest(
        'The available balance does not cover this debit (credit on hold cannot be debited).',
        'amount',
        'insufficient_balance',
      );
    }
    return accountJson(result.account);
  });

  admin.get('/admin/v1/users', async (request) => {
    const accountId = query(request).account_id;
    const users = await deps.users.listUsers(typeof accountId === 'string' && accountId !== '' ? accountId : undefined);
    return { object: 'list', data: users.map((user) => ({ ...userJson(user), created_at: Math.floor(user.createdAt / 1000) })) };
  });
  admin.post('/admin/v1/users', async (request, reply) => {
    const user = await deps.users.createUser(body(request));
    return reply.code(201).send({ ...userJson(user), created_at: Math.floor(user.createdAt / 1000) });
  });

  admin.post('/admin/v1/credit-codes', async (request, reply) => {
    const created = await deps.creditCodes.create(body(request));
    return reply.code(201).send({ object: 'list', data: created.map(({ record, code }) => creditCodeJson(record, code)) });
  });
  admin.get('/admin/v1/credit-codes', async (request) => ({
    object: 'list',
    data: (await deps.creditCodes.list(limit(request, 100))).map((record) => creditCodeJson(record)),
  }));

  admin.get('/admin/v1/models', async () => deps.console.models());
  admin.get('/admin/v1/stats', async () => deps.console.stats());
  admin.get('/admin/v1/margins', async (request) => {
    const raw = query(request).days;
    const days = raw === undefined ? 30 : typeof raw === 'string' && /^[0-9]{1,3}$/.test(raw) ? Number(raw) : Number.NaN;
    if (!(days >= 1 && days <= 366))
      throw invalidRequest("'days' must be a whole number from 1 to 366 (the last N UTC days, today included).", 'days');
    return deps.console.margins(days);
  });
}
