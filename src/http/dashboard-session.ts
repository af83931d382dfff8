import type {} from '@fastify/cookie'; // request.cookies, reply.setCookie
import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError } from '../domain/errors.ts';
import type { DashboardUsers, OpenedSession, SessionUser } from '../services/dashboard-users.ts';

/**
 * The dashboard's session cookie and the rules around it (docs/dashboard.md): HttpOnly, SameSite=Strict, Path=/,
 * Secure over HTTPS; a state-changing request authenticated by the cookie must come from our own origin.
 */
export const SESSION_COOKIE = 'deepshi_session';
const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function sessionToken(request: FastifyRequest): string | undefined {
  const value = request.cookies?.[SESSION_COOKIE];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

export async function currentSession(request: FastifyRequest, users: DashboardUsers): Promise<SessionUser | undefined> {
  return users.session(sessionToken(request));
}

export async function requireSession(request: FastifyRequest, users: DashboardUsers): Promise<SessionUser> {
  const session = await currentSession(request, users);
  if (!session) {
    throw new GatewayError('Sign in first: this needs a dashboard session.', {
      status: 401,
      type: 'authentication_error',
      code: 'not_signed_in',
    });
  }
  return session;
}

/**
 * CSRF defence for cookie-authenticated writes: the browser's Origin must be this server's own (scheme and Host as
 * this request arrived, X-Forwarded-* honoured only behind a trusted proxy). SameSite=Strict already keeps the cookie
 * off cross-site requests; this also refuses same-site pages on other origins and anything without an Origin.
 */
export function assertSameOrigin(request: FastifyRequest): void {
  if (!STATE_CHANGING.has(request.method)) return;
  const origin = request.headers.origin;
  const expected = `${request.protocol}://${request.host}`;
  if (typeof origin !== 'string' || origin.toLowerCase() !== expected.toLowerCase() || request.headers['sec-fetch-site'] === 'cross-site') {
    throw new GatewayError(`This request must come from the dashboard's own origin (${expected}).`, {
      status: 403,
      type: 'permission_error',
      code: 'origin_mismatch',
    });
  }
}

export function setSessionCookie(request: FastifyRequest, reply: FastifyReply, opened: OpenedSession): void {
  reply.setCookie(SESSION_COOKIE, opened.token, {
    httpOnly: true,
    sameSite: 'strict',
    path: '/',
    secure: request.protocol === 'https',
    expires: new Date(opened.expiresAt),
  });
}

export function clearSessionCookie(request: FastifyRequest, reply: FastifyReply): void {
  reply.clearCookie(SESSION_COOKIE, { httpOnly: true, sameSite: 'strict', path: '/', secure: request.protocol === 'https' });
}

/** The account a dashboard request acts on: a member's own; for an operator, the one named by ?account_id=. */
export function targetAccount(request: FastifyRequest, session: SessionUser): string {
  if (session.role === 'operator') {
    const id = (request.query as { account_id?: unknown }).account_id;
    if (typeof id === 'string' && id !== '') return id;
    if (session.accountId) return session.accountId;
    throw new GatewayError('An operator acts on an account by naming it: add ?account_id=acct_….', {
      status: 400,
      type: 'invalid_request_error',
      code: 'missing_account_id',
      param: 'account_id',
    });
  }
  if (!session.accountId)
    throw new GatewayError('This user belongs to no account.', { status: 403, type: 'permission_error', code: 'member_only' });
  return session.accountId;
}
