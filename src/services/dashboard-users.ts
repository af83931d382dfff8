import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { issueApiKey, newKeyId } from '../auth/api-keys.ts';
import { decoyPasswordHash, hashPassword, sha256Hex, verifyPassword } from '../auth/passwords.ts';
import { waitInWords } from '../domain/durations.ts';
import { GatewayError, invalidRequest } from '../domain/errors.ts';
import type { Nanos } from '../domain/money.ts';
import type { AttemptCounter } from '../limits/attempts.ts';
import type { UserRecord, UserRole } from '../store/dashboard-types.ts';
import type { Store } from '../store/types.ts';

/**
 * People and their dashboard sessions (docs/dashboard.md): sign-in with throttling, sign-up, sign-out, password
 * change, operator sessions opened with the admin token, and the playground's temporary keys. A session token is
 * 256 random bits handed to the browser once; the store only ever sees its SHA-256.
 */
export interface SessionUser {
  /** "operator" for a session opened with the admin token. */
  id: string;
  email: string | null;
  role: UserRole;
  accountId: string | null;
  /** SHA-256 of the session token: identifies the session to the store. */
  sessionHash: string;
}

export interface OpenedSession {
  user: SessionUser;
  /** The cookie's value; never stored or logged. */
  token: string;
  expiresAt: number;
}

/** Sign-in throttling: failed attempts per email and per IP within a window, then 429 until it ends. */
export const SIGN_IN_LIMITS = { perEmail: 5, perIp: 20, windowMs: 15 * 60_000, signUpsPerIp: 10, signUpWindowMs: 60 * 60_000 } as const;
/** Credit-code redemption is throttled the same way, per account and per IP, against guessing. */
export const REDEEM_LIMITS = { perAccount: 10, perIp: 20, windowMs: 15 * 60_000 } as const;
export const PLAYGROUND_KEY_TTL_MS = 60 * 60_000;
const MIN_PASSWORD = 10;
const MAX_PASSWORD = 1024;

export interface DashboardUsersOptions {
  store: Store;
  attempts: AttemptCounter;
  keyPepper: string;
  adminToken: string | undefined;
  sessionTtlMs: number;
  signup: { open: boolean; credits: Nanos };
  /** Test seam: scrypt parameters (the default is PASSWORD_PARAMS). */
  passwordParams?: { N: number; r: number; p: number };
}

export class DashboardUsers {
  constructor(private readonly options: DashboardUsersOptions) {}

  get signupOpen(): boolean {
    return this.options.signup.open;
  }

  get adminSignIn(): boolean {
    return this.options.adminToken !== undefined;
  }

  async signIn(input: { email?: unknown; password?: unknown }, ip: string): Promise<OpenedSession> {
    const email = typeof input.email === 'string' ? normaliseEmail(input.email) : '';
    const password = typeof input.password === 'string' ? input.password : '';
    if (!email || !password)
      throw invalidRequest("Send 'email' and 'password'.", email ? 'password' : 'email', 'missing_required_parameter');
    const emailName = `signin:email:${sha256Hex(email)}`;
    const ipName = `signin:ip:${ip}`;
    await this.refuseIfThrottled([
      [emailName, SIGN_IN_LIMITS.perEmail],
      [ipName, SIGN_IN_LIMITS.perIp],
    ]);
    const user = await this.options.store.dashboard.findUserByEmail(email);
    // An unknown email costs the same scrypt as a wrong password, so timing does not tell which emails exist.
    const matches = await verifyPassword(password, user?.passwordHash ?? (await decoyPasswordHash()));
    if (!user || !matches) {
      await this.recordFailure([emailName, ipName], SIGN_IN_LIMITS.windowMs);
      throw invalidCredentials();
    }
    await this.options.attempts.clear(emailName);
    return this.open(user);
  }

  async signInOperator(input: { admin_token?: unknown }, ip: string): Promise<OpenedSession> {
    const ipName = `signin:ip:${ip}`;
    await this.refuseIfThrottled([[ipName, SIGN_IN_LIMITS.perIp]]);
    const adminToken = this.options.adminToken;
    const given = typeof input.admin_token === 'string' ? input.admin_token : '';
    if (!adminToken || !constantTimeEqual(given, adminToken)) {
      await this.recordFailure([ipName], SIGN_IN_LIMITS.windowMs);
      throw invalidCredentials(
        adminToken ? 'The operator token is not correct.' : 'Operator sign-in is off: DEEPSHI_ADMIN_TOKEN is not set.',
      );
    }
    const token = newToken();
    const expiresAt = Date.now() + this.options.sessionTtlMs;
    const sessionHash = sha256Hex(token);
    await this.options.store.dashboard.createSession({
      tokenHash: sessionHash,
      userId: null,
      role: 'operator',
      credential: adminFingerprint(adminToken),
      expiresAt,
    });
    return { token, expiresAt, user: { id: 'operator', email: null, role: 'operator', accountId: null, sessionHash } };
  }

  async signUp(input: { email?: unknown; password?: unknown }, ip: string): Promise<OpenedSession> {
    if (!this.options.signup.open) {
      throw new GatewayError('Sign-up is closed on this server; ask the operator for an account.', {
        status: 403,
        type: 'permission_error',
        code: 'signup_closed',
      });
    }
    const email = readEmail(input.email);
    const password = readPassword(input.password, 'password');
    const ipName = `signup:ip:${ip}`;
    await this.refuseIfThrottled([[ipName, SIGN_IN_LIMITS.signUpsPerIp]]);
    // Every sign-up counts (not only failures): it creates an account.
    await this.recordFailure([ipName], SIGN_IN_LIMITS.signUpWindowMs);
    const created = await this.options.store.dashboard.createAccountWithUser({
      accountName: email,
      credits: this.options.signup.credits,
      note: 'sign-up credit',
      user: { id: newUserId(), email, passwordHash: await hashPassword(password, this.options.passwordParams) },
    });
    if (!created) throw emailTaken();
    return this.open(created.user);
  }

  /** The live session behind a cookie's token, or undefined. */
  async session(token: string | undefined): Promise<SessionUser | undefined> {
    if (!token || token.length > 200) return undefined;
    const sessionHash = sha256Hex(token);
    const session = await this.options.store.dashboard.getSession(sessionHash, Date.now());
    if (!session) return undefined;
    if (session.user) {
      return { id: session.user.id, email: session.user.email, role: session.user.role, accountId: session.user.accountId, sessionHash };
    }
    // An admin-token session lives only as long as that token is the operator's.
    const adminToken = this.options.adminToken;
    if (!adminToken || session.credential !== adminFingerprint(adminToken)) return undefined;
    return { id: 'operator', email: null, role: 'operator', accountId: null, sessionHash };
  }

  async signOut(token: string | undefined): Promise<void> {
    if (token && token.length <= 200) await this.options.store.dashboard.deleteSession(sha256Hex(token));
  }

  /** Checks the current password, sets the new one and ends every other session of the user. */
  async changePassword(session: SessionUser, input: { current_password?: unknown; new_password?: unknown }, ip: string): Promise<void> {
    if (!session.email) throw invalidRequest('An operator signed in with the admin token has no password to change.', null, 'no_password');
    const user = await this.options.store.dashboard.getUser(session.id);
    if (!user) throw invalidCredentials();
    const next = readPassword(input.new_password, 'new_password');
    const current = typeof input.current_password === 'string' ? input.current_password : '';
    const emailName = `signin:email:${sha256Hex(user.email)}`;
    const ipName = `signin:ip:${ip}`;
    await this.refuseIfThrottled([
      [emailName, SIGN_IN_LIMITS.perEmail],
      [ipName, SIGN_IN_LIMITS.perIp],
    ]);
    if (!(await verifyPassword(current, user.passwordHash))) {
      await this.recordFailure([emailName, ipName], SIGN_IN_LIMITS.windowMs);
      throw invalidCredentials('The current password is not correct.');
    }
    await this.options.store.dashboard.setUserPassword(user.id, await hashPassword(next, this.options.passwordParams), session.sessionHash);
  }

  /** Operator: a user for an account (members) or for the console (operators). */
  async createUser(input: { account_id?: unknown; email?: unknown; password?: unknown; role?: unknown }): Promise<UserRecord> {
    const role = input.role === undefined || input.role === null ? 'member' : input.role;
    if (role !== 'member' && role !== 'operator') throw invalidRequest("'role' must be 'member' or 'operator'.", 'role');
    const email = readEmail(input.email);
    const password = readPassword(input.password, 'password');
    let accountId: string | null = null;
    if (input.account_id !== undefined && input.account_id !== null) {
      if (typeof input.account_id !== 'string') throw invalidRequest("'account_id' must be an account id.", 'account_id', 'invalid_type');
      if (!(await this.options.store.getAccount(input.account_id))) {
        throw new GatewayError(`No account with id "${input.account_id.slice(0, 80)}".`, {
          status: 404,
          type: 'invalid_request_error',
          code: 'not_found',
          param: 'account_id',
        });
      }
      accountId = input.account_id;
    } else if (role === 'member') {
      throw invalidRequest("'account_id' is required for a member.", 'account_id', 'missing_required_parameter');
    }
    const user = await this.options.store.dashboard.createUser({
      id: newUserId(),
      email,
      passwordHash: await hashPassword(password, this.options.passwordParams),
      role,
      accountId,
    });
    if (!user) throw emailTaken();
    return user;
  }

  listUsers(accountId?: string): Promise<UserRecord[]> {
    return this.options.store.dashboard.listUsers(accountId);
  }

  /** A temporary key of the session's account for the playground: 1 hour at most, deleted with the session. */
  async playgroundKey(session: SessionUser, accountId: string): Promise<{ key: string; expiresAt: number }> {
    if (!(await this.options.store.getAccount(accountId))) {
      throw new GatewayError(`No account with id "${accountId.slice(0, 80)}".`, {
        status: 404,
        type: 'invalid_request_error',
        code: 'not_found',
        param: 'account_id',
      });
    }
    const issued = issueApiKey(this.options.keyPepper);
    const sessionRecord = await this.options.store.dashboard.getSession(session.sessionHash, Date.now());
    const expiresAt = Math.min(Date.now() + PLAYGROUND_KEY_TTL_MS, sessionRecord?.expiresAt ?? Date.now() + PLAYGROUND_KEY_TTL_MS);
    await this.options.store.dashboard.createPlaygroundKey({
      id: newKeyId(),
      accountId,
      name: 'playground',
      models: null,
      hash: issued.hash,
      display: issued.display,
      sessionHash: session.sessionHash,
      expiresAt,
    });
    return { key: issued.key, expiresAt };
  }

  /** Deletes expired sessions (and their playground keys); run by the server's sweeper. */
  sweep(): Promise<number> {
    return this.options.store.dashboard.deleteExpiredSessions(Date.now(), 500);
  }

  /** Throttling shared with other dashboard actions (credit-code redemption). */
  async refuseIfThrottled(limits: Array<[name: string, max: number]>): Promise<void> {
    for (const [name, max] of limits) {
      const state = await this.options.attempts.peek(name);
      if (state.count >= max) {
        const seconds = Math.max(1, Math.ceil(state.resetMs / 1000));
        throw new GatewayError(`Too many attempts. Try again in ${waitInWords(seconds)}.`, {
          status: 429,
          type: 'rate_limit_error',
          code: 'too_many_attempts',
          headers: { 'retry-after': String(seconds) },
        });
      }
    }
  }

  async recordFailure(names: string[], windowMs: number): Promise<void> {
    await Promise.all(names.map((name) => this.options.attempts.fail(name, windowMs)));
  }

  private async open(user: UserRecord): Promise<OpenedSession> {
    const token = newToken();
    const expiresAt = Date.now() + this.options.sessionTtlMs;
    const sessionHash = sha256Hex(token);
    await this.options.store.dashboard.createSession({
      tokenHash: sessionHash,
      userId: user.id,
      role: user.role,
      credential: null,
      expiresAt,
    });
    return { token, expiresAt, user: { id: user.id, email: user.email, role: user.role, accountId: user.accountId, sessionHash } };
  }
}

export function userJson(user: { id: string; email: string | null; role: UserRole; accountId: string | null }) {
  return { id: user.id, email: user.email, role: user.role, account_id: user.accountId };
}

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

function readEmail(value: unknown): string {
  const email = typeof value === 'string' ? normaliseEmail(value) : '';
  if (!/^[^\s@]+@[^\s@]+$/.test(email) || email.length > 254) {
    throw invalidRequest("'email' must be an email address.", 'email', 'invalid_email');
  }
  return email;
}

function readPassword(value: unknown, param: string): string {
  if (typeof value !== 'string' || value.length < MIN_PASSWORD || value.length > MAX_PASSWORD) {
    throw invalidRequest(`'${param}' must be ${MIN_PASSWORD} to ${MAX_PASSWORD} characters long.`, param, 'weak_password');
  }
  return value;
}

function invalidCredentials(message = 'The email or password is not correct.'): GatewayError {
  return new GatewayError(message, { status: 401, type: 'authentication_error', code: 'invalid_credentials' });
}

function emailTaken(): GatewayError {
  return new GatewayError('A user with this email already exists.', {
    status: 409,
    type: 'invalid_request_error',
    code: 'email_taken',
    param: 'email',
  });
}

function newToken(): string {
  return randomBytes(32).toString('base64url');
}

function newUserId(): string {
  return `user_${randomUUID().replace(/-/g, '').slice(0, 20)}`;
}

/**
 * Recognises which admin token opened a session without storing anything that helps guess it: 24 bits of its
 * SHA-256 tell a changed token apart (1 in 16 million chance of a miss) and match millions of wrong guesses.
 */
function adminFingerprint(adminToken: string): string {
  return sha256Hex(`deepshi-admin-session:${adminToken}`).slice(0, 6);
}

function constantTimeEqual(given: string, expected: string): boolean {
  // Digests have equal lengths whatever the inputs, as timingSafeEqual requires.
  return timingSafeEqual(Buffer.from(sha256Hex(given), 'hex'), Buffer.from(sha256Hex(expected), 'hex'));
}
