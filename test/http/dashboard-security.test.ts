/**
 * The dashboard's security properties over HTTP against a real server, on SQLite and on PostgreSQL: a session cookie
 * is refused from another origin; one account's user cannot read or change another account's keys, usage or ledger
 * through any dashboard route; sign-in throttling engages (and holds across instances through Redis); passwords,
 * session tokens, credit codes and keys never appear in the logs (the server's own pino configuration, captured) or in
 * clear in the database (its raw bytes / every row); the dashboard routes never answer cross-origin.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, describe, it, test } from 'node:test';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { loadConfig } from '../../src/config/config.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { DashboardClient } from '../helpers/dashboard-client.ts';
import { registerDeepshiServer } from '../helpers/documented-http.ts';
import { documentedFetch } from '../helpers/openapi-responses.ts';
import { dropSchemas, freshPostgresSchema, postgresBaseUrl, withPostgres } from '../helpers/postgres-schema.ts';

const ADMIN_TOKEN = 'security-admin-token-0123456789abcdef';
const PASSWORD = 'correct horse battery';
const EVIL = 'https://evil.example';

interface Running {
  server: RunningServer;
  url: string;
  logs: () => string;
  /** Every byte the database holds, as text (SQLite: the files; PostgreSQL: every row of every table). */
  databaseText: () => Promise<string>;
  close: () => Promise<void>;
}

async function start(store: 'sqlite' | 'postgres', env: Record<string, string> = {}): Promise<Running> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-dash-security-'));
  let databaseUrl = `sqlite:${path.join(dir, 'deepshi.db')}`;
  let schema = '';
  if (store === 'postgres') ({ url: databaseUrl, schema } = await freshPostgresSchema());
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    DEEPSHI_ADMIN_TOKEN: ADMIN_TOKEN,
    DEEPSHI_DEV_ACCOUNT: 'false',
    LOG_LEVEL: 'trace',
    DEEPSHI_TRUST_PROXY: 'true',
    ...env,
  });
  let logText = '';
  const logStream = new Writable({
    write: (chunk, _encoding, done) => {
      logText += String(chunk);
      done();
    },
  });
  const server = await startServer(config, { logStream });
  const unregister = registerDeepshiServer(server.url);
  return {
    server,
    url: server.url,
    logs: () => logText,
    async databaseText() {
      if (store === 'sqlite') {
        return fs
          .readdirSync(dir)
          .map((file) => fs.readFileSync(path.join(dir, file)).toString('latin1'))
          .join('\n');
      }
      return withPostgres(async (client) => {
        const tables = (await client.query('SELECT table_name FROM information_schema.tables WHERE table_schema = $1', [schema])).rows;
        const parts: string[] = [];
        for (const { table_name: table } of tables) {
          const rows = (await client.query(`SELECT row_to_json(t)::text AS row FROM ${schema}.${table} t`)).rows;
          parts.push(...rows.map((row) => row.row as string));
        }
        return parts.join('\n');
      });
    },
    async close() {
      await server.close();
      unregister();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An IP of its own for each scenario, so throttling counters of one never bleed into another (X-Forwarded-For). */
let ipCounter = 0;
const freshIp = () => `10.0.${Math.floor(++ipCounter / 250)}.${(ipCounter % 250) + 1}`;

function clientFor(url: string, origin: string | null = url, ip = freshIp()): DashboardClient {
  const client = new DashboardClient(url, origin);
  const request = client.request.bind(client);
  client.request = (method, route, body, headers = {}) => request(method, route, body, { 'x-forwarded-for': ip, ...headers });
  return client;
}

async function admin(url: string, method: string, route: string, body?: unknown) {
  const response = await documentedFetch(`${url}${route}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  if (response.status >= 300) throw new Error(`admin ${method} ${route} → ${response.status} ${response.text}`);
  return response.body;
}

async function member(url: string, credits = '5') {
  const account = await admin(url, 'POST', '/admin/v1/accounts', { name: 'member', credits });
  const email = `m-${randomUUID().slice(0, 8)}@example.com`;
  await admin(url, 'POST', '/admin/v1/users', { account_id: account.id, email, password: PASSWORD });
  const client = clientFor(url);
  await client.signIn(email, PASSWORD);
  const key = (await client.post('/dashboard/api/keys', { name: 'own' })).body;
  return { accountId: account.id as string, email, client, key };
}

const sdk = (url: string, key: string) => new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 });

for (const store of ['sqlite', 'postgres'] as const) {
  if (store === 'postgres' && !postgresBaseUrl) {
    if (process.env.CI) test('dashboard security on PostgreSQL', () => assert.fail('DEEPSHI_TEST_POSTGRES_URL must be set in CI'));
    else test('dashboard security on PostgreSQL', { skip: 'DEEPSHI_TEST_POSTGRES_URL is not set' }, () => {});
    continue;
  }

  describe(`dashboard security (${store})`, () => {
    let s: Running;
    before(async () => {
      s = await start(store, { DEEPSHI_SIGNUP: 'open' });
    });
    after(async () => {
      await s?.close();
      await dropSchemas();
    });

    it('a session cookie is refused from another origin, or with no Origin, on every state-changing route', async () => {
      const { client, key } = await member(s.url);
      const writes: Array<[string, string, unknown?]> = [
        ['POST', '/dashboard/api/keys', { name: 'evil' }],
        ['POST', `/dashboard/api/keys/${key.id}/rotate`],
        ['POST', `/dashboard/api/keys/${key.id}/revoke`],
        ['DELETE', `/dashboard/api/keys/${key.id}`],
        ['POST', '/dashboard/api/credit-codes/redeem', { code: 'DSC-0000-0000-0000-0000' }],
        ['POST', '/dashboard/api/playground-key'],
        ['POST', '/dashboard/api/password', { current_password: PASSWORD, new_password: 'evil evil evil' }],
        ['DELETE', '/dashboard/api/session'],
      ];
      for (const origin of [EVIL, null, s.url.replace('127.0.0.1', 'localhost'), s.url.replace('http:', 'https:')]) {
        const attacker = client.withOrigin(origin);
        for (const [method, route, body] of writes) {
          const response = await attacker.request(method, route, body);
          assert.equal(response.status, 403, `${method} ${route} from ${origin}`);
          assert.equal(response.body.error.code, 'origin_mismatch');
        }
      }
      // Nothing happened: the key is unchanged and still works, the session still lives, the password is the same.
      const keys = (await client.get('/dashboard/api/keys')).body.data;
      assert.deepEqual(
        keys.map((k: { id: string; status: string }) => [k.id, k.status]),
        [[key.id, 'active']],
      );
      await sdk(s.url, key.key).models.list();
      assert.equal((await client.get('/dashboard/api/session')).status, 200);

      // The operator's cookie on /admin/v1 obeys the same rule.
      const operator = clientFor(s.url);
      await operator.post('/dashboard/api/session', { admin_token: ADMIN_TOKEN });
      const forged = await operator.withOrigin(EVIL).post('/admin/v1/accounts', { name: 'forged', credits: '100' });
      assert.deepEqual([forged.status, forged.body.error.code], [403, 'origin_mismatch']);
      assert.equal((await operator.get('/admin/v1/accounts?q=forged')).body.data.length, 0);
    });

    it('the dashboard routes never answer cross-origin, even with DEEPSHI_CORS_ORIGINS=* (the default)', async () => {
      const { client } = await member(s.url);
      const read = await client.withOrigin(EVIL).get('/dashboard/api/session');
      for (const [name] of read.headers) assert.doesNotMatch(name, /^access-control-/, `GET carries ${name}`);
      for (const route of ['/dashboard/api/keys', '/dashboard/api/session', '/dashboard/api/usage', '/admin/v1/accounts']) {
        const preflight = await fetch(`${s.url}${route}`, {
          method: 'OPTIONS',
          headers: { origin: EVIL, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
        });
        await preflight.arrayBuffer();
        for (const [name] of preflight.headers) assert.doesNotMatch(name, /^access-control-/, `preflight of ${route} carries ${name}`);
      }
      // /v1 does answer cross-origin (the contrast that shows the check can fail).
      const v1 = await fetch(`${s.url}/v1/models`, {
        method: 'OPTIONS',
        headers: { origin: EVIL, 'access-control-request-method': 'GET' },
      });
      await v1.arrayBuffer();
      assert.equal(v1.headers.get('access-control-allow-origin'), '*');
    });

    it("account A's user cannot read or change account B's keys, usage or ledger through any dashboard route", async () => {
      const a = await member(s.url);
      const b = await member(s.url);
      await sdk(s.url, b.key.key).images.generate({ model: 'deepshi-sketch', prompt: "b's secret picture" });
      const bUsage = (await b.client.get('/dashboard/api/usage')).body.data;
      assert.equal(bUsage.length, 1);

      for (const [method, route] of [
        ['POST', `/dashboard/api/keys/${b.key.id}/rotate`],
        ['POST', `/dashboard/api/keys/${b.key.id}/revoke`],
        ['DELETE', `/dashboard/api/keys/${b.key.id}`],
        ['POST', `/dashboard/api/keys/${b.key.id}/rotate?account_id=${b.accountId}`],
        ['DELETE', `/dashboard/api/keys/${b.key.id}?account_id=${b.accountId}`],
      ]) {
        const response = await a.client.request(method, route);
        assert.deepEqual([response.status, response.body.error.code], [404, 'not_found'], `${method} ${route}`);
      }
      await sdk(s.url, b.key.key).models.list(); // B's key untouched

      // Reads: a member's ?account_id= is ignored; B's key id as a filter finds nothing.
      const asB = `account_id=${b.accountId}`;
      assert.equal((await a.client.get(`/dashboard/api/overview?${asB}`)).body.account.id, a.accountId);
      assert.deepEqual(
        (await a.client.get(`/dashboard/api/keys?${asB}`)).body.data.map((k: { id: string }) => k.id),
        [a.key.id],
      );
      assert.deepEqual((await a.client.get(`/dashboard/api/usage?${asB}`)).body.data, []);
      assert.deepEqual((await a.client.get(`/dashboard/api/usage?key_id=${b.key.id}`)).body.data, []);
      const csv = await a.client.get(`/dashboard/api/usage.csv?${asB}&key_id=${b.key.id}`);
      assert.equal(csv.text.trim().split('\r\n').length, 1, 'header only');
      const ledger = (await a.client.get(`/dashboard/api/ledger?${asB}`)).body.data;
      assert.ok(ledger.every((entry: { request_id: string | null }) => entry.request_id !== bUsage[0].id));
      assert.equal(ledger.length, 1, "A's own opening credit only");

      // Writes that name B land on A (or nowhere): a playground key and a redeemed code are A's.
      const playground = (await a.client.post(`/dashboard/api/playground-key?${asB}`)).body.key;
      const owner = (await documentedFetch(`${s.url}/v1/account`, { headers: { authorization: `Bearer ${playground}` } })).body;
      assert.equal(owner.id, a.accountId);
      const [{ code }] = (await admin(s.url, 'POST', '/admin/v1/credit-codes', { amount: '1' })).data;
      const redeemed = await a.client.post(`/dashboard/api/credit-codes/redeem?${asB}`, { code });
      assert.equal(redeemed.body.account.id, a.accountId);
      assert.equal(
        (await b.client.get('/dashboard/api/overview')).body.account.balance,
        (await admin(s.url, 'GET', `/admin/v1/accounts/${b.accountId}`)).balance,
      );
      const created = await a.client.post(`/dashboard/api/keys?${asB}`, { name: 'where?' });
      assert.equal(created.body.account_id, a.accountId);

      // And a member's session is no way into /admin/v1.
      assert.equal((await a.client.get(`/admin/v1/accounts/${b.accountId}`)).status, 401);
      assert.equal((await a.client.post(`/admin/v1/accounts/${a.accountId}/credits`, { amount: '100' })).status, 401);
    });

    it('sign-in throttling engages per email (5 failures) and per IP (20), then refuses even the right password', async () => {
      const { email } = await member(s.url);
      const ip = freshIp();
      const attacker = clientFor(s.url, s.url, ip);
      for (let i = 0; i < 5; i++)
        assert.equal((await attacker.post('/dashboard/api/session', { email, password: `guess ${i}` })).status, 401);
      const blocked = await clientFor(s.url, s.url, freshIp()).post('/dashboard/api/session', { email, password: PASSWORD });
      assert.deepEqual([blocked.status, blocked.body.error.code], [429, 'too_many_attempts']);
      const retryAfter = Number(blocked.headers.get('retry-after'));
      assert.ok(retryAfter > 0 && retryAfter <= 15 * 60, `Retry-After ${retryAfter}`);
      // The message says the same wait in whole minutes, rounded up (Retry-After stays in seconds).
      const minutes = Number(/^Too many attempts\. Try again in (\d+) minutes\.$/.exec(blocked.body.error.message)?.[1]);
      assert.ok(minutes * 60 >= retryAfter && (minutes - 1) * 60 < retryAfter, `${blocked.body.error.message} / ${retryAfter} s`);

      // Per IP: 20 failures over many emails, then even a fresh email from that IP is refused.
      const sprayer = clientFor(s.url, s.url, freshIp());
      for (let i = 0; i < 20; i++)
        assert.equal(
          (await sprayer.post('/dashboard/api/session', { email: `nobody${i}@example.com`, password: 'nope nope nope' })).status,
          401,
        );
      const other = await member(s.url);
      const sprayed = await sprayer.post('/dashboard/api/session', { email: other.email, password: PASSWORD });
      assert.deepEqual([sprayed.status, sprayed.body.error.code], [429, 'too_many_attempts']);
      // The operator token is throttled per IP too.
      const tokenGuess = await sprayer.post('/dashboard/api/session', { admin_token: ADMIN_TOKEN });
      assert.equal(tokenGuess.status, 429);
    });

    it('passwords, session tokens, codes and keys never appear in the logs or in clear in the database', async () => {
      const secrets: string[] = [ADMIN_TOKEN, PASSWORD];
      const signup = clientFor(s.url);
      const signupPassword = `sign-up ${randomUUID()}`;
      secrets.push(signupPassword);
      await signup.post('/dashboard/api/signup', { email: `new-${randomUUID().slice(0, 6)}@example.com`, password: signupPassword });
      secrets.push(signup.cookie!.split('=')[1]);
      const m = await member(s.url);
      secrets.push(m.client.cookie!.split('=')[1], m.key.key);
      await m.client.post('/dashboard/api/session', { email: m.email, password: 'a wrong password here' });
      const newPassword = `changed ${randomUUID()}`;
      secrets.push(newPassword);
      assert.equal((await m.client.post('/dashboard/api/password', { current_password: PASSWORD, new_password: newPassword })).status, 204);
      const playground = (await m.client.post('/dashboard/api/playground-key')).body.key;
      secrets.push(playground);
      await sdk(s.url, playground).images.generate({ model: 'deepshi-sketch', prompt: 'a secretive cat' });
      const operator = clientFor(s.url);
      await operator.post('/dashboard/api/session', { admin_token: ADMIN_TOKEN });
      secrets.push(operator.cookie!.split('=')[1]);
      const codes = (await operator.post('/admin/v1/credit-codes', { amount: '1', count: 2 })).body.data.map(
        (c: { code: string }) => c.code,
      );
      secrets.push(...codes);
      await m.client.post('/dashboard/api/credit-codes/redeem', { code: codes[0] });
      await m.client.post('/dashboard/api/credit-codes/redeem', { code: codes[0] });
      await m.client.delete('/dashboard/api/session');

      const logs = s.logs();
      assert.ok(logs.length > 1000, 'the server logged at trace level');
      const database = await s.databaseText();
      assert.ok(database.includes(m.email), 'the database text is readable (the email is there)');
      for (const secret of secrets) {
        assert.equal(logs.includes(secret), false, `a secret (${secret.slice(0, 6)}…) is in the logs`);
        assert.equal(database.includes(secret), false, `a secret (${secret.slice(0, 6)}…) is in the database`);
        // Codes are hashed after upper-casing: not in clear in any case either.
        assert.equal(database.toLowerCase().includes(secret.toLowerCase()), false);
      }
      assert.match(database, /scrypt\$32768\$8\$1\$/, 'passwords are stored as scrypt hashes with their parameters');
    });
  });
}

describe('session cookie transport and lifetime', () => {
  it('is Secure behind an HTTPS proxy only when the proxy is trusted, and the Origin then must be https', async () => {
    for (const trusted of [true, false]) {
      const s = await start('sqlite', { DEEPSHI_TRUST_PROXY: String(trusted) });
      try {
        const { email } = await member(s.url);
        const host = new URL(s.url).host;
        const client = new DashboardClient(s.url, `https://${host}`);
        const response = await client.post('/dashboard/api/session', { email, password: PASSWORD }, { 'x-forwarded-proto': 'https' });
        if (trusted) {
          assert.equal(response.status, 200);
          assert.match(client.lastSetCookie ?? '', /; Secure/i);
          assert.equal((await client.post('/dashboard/api/playground-key', {}, { 'x-forwarded-proto': 'https' })).status, 200);
          const plain = await client
            .withOrigin(`http://${host}`)
            .post('/dashboard/api/playground-key', {}, { 'x-forwarded-proto': 'https' });
          assert.equal(plain.status, 403, 'http origin against an https request');
        } else {
          // An untrusted X-Forwarded-Proto is ignored: the request is plain HTTP, so an https Origin is foreign.
          assert.deepEqual([response.status, response.body.error.code], [403, 'origin_mismatch']);
          const plain = new DashboardClient(s.url);
          await plain.request('POST', '/dashboard/api/session', { email, password: PASSWORD }, { 'x-forwarded-proto': 'https' });
          assert.doesNotMatch(plain.lastSetCookie ?? '', /Secure/i);
        }
      } finally {
        await s.close();
      }
    }
  });

  it('an operator session opened with the admin token ends when the token changes', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-rotate-'));
    const open = async (token: string) => {
      const server = await startServer(
        loadConfig({
          PORT: '0',
          HOST: '127.0.0.1',
          DATABASE_URL: `sqlite:${path.join(dir, 'd.db')}`,
          DEEPSHI_ADMIN_TOKEN: token,
          DEEPSHI_DEV_ACCOUNT: 'false',
          LOG_LEVEL: 'silent',
        }),
      );
      registerDeepshiServer(server.url);
      return server;
    };
    try {
      const first = await open(ADMIN_TOKEN);
      const operator = new DashboardClient(first.url);
      assert.equal((await operator.post('/dashboard/api/session', { admin_token: ADMIN_TOKEN })).status, 200);
      assert.equal((await operator.get('/admin/v1/accounts')).status, 200);
      await first.close();
      const second = await open('a-brand-new-admin-token-9876543210');
      try {
        const again = new DashboardClient(second.url);
        again.cookie = operator.cookie;
        assert.equal((await again.get('/dashboard/api/session')).status, 401);
        assert.equal((await again.get('/admin/v1/accounts')).status, 401);
      } finally {
        await second.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('unknown /dashboard/api paths are JSON 404 envelopes, never the page', async () => {
    const s = await start('sqlite');
    try {
      const response = await fetch(`${s.url}/dashboard/api/nope`);
      assert.equal(response.status, 404);
      assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
      assert.ok((await response.json()).error.message); // an undocumented path: validated as an envelope only
    } finally {
      await s.close();
    }
  });
});

describe('sign-in throttling across instances (Redis)', {
  skip: process.env.DEEPSHI_TEST_REDIS_URL ? false : 'DEEPSHI_TEST_REDIS_URL is not set',
}, () => {
  const prefix = `deepshi-test-${randomUUID().slice(0, 8)}:`;
  let one: Running;
  let two: Running;
  before(async () => {
    const env = { REDIS_URL: process.env.DEEPSHI_TEST_REDIS_URL!, DEEPSHI_REDIS_PREFIX: prefix };
    one = await start('sqlite', env);
    two = await start('sqlite', env);
  });
  after(async () => {
    await one?.close();
    await two?.close();
  });

  it('failures on one instance count on the other', async () => {
    const email = `shared-${randomUUID().slice(0, 6)}@example.com`;
    for (let i = 0; i < 5; i++) {
      const instance = i % 2 === 0 ? one : two;
      assert.equal((await clientFor(instance.url).post('/dashboard/api/session', { email, password: 'wrong password' })).status, 401);
    }
    for (const instance of [one, two]) {
      const response = await clientFor(instance.url).post('/dashboard/api/session', { email, password: 'wrong password' });
      assert.deepEqual([response.status, response.body.error.code], [429, 'too_many_attempts']);
    }
  });

  it('says the wait in seconds below a minute and in whole minutes above it, as Retry-After counts it', async () => {
    const email = `wait-${randomUUID().slice(0, 6)}@example.com`;
    for (let i = 0; i < 5; i++)
      assert.equal((await clientFor(one.url).post('/dashboard/api/session', { email, password: 'wrong password' })).status, 401);
    // Shorten the email's window where the instances keep it (src/limits/attempts.ts, keyed by the email's SHA-256).
    const redis = new Redis(process.env.DEEPSHI_TEST_REDIS_URL!);
    const windowKey = `${prefix}attempts:signin:email:${createHash('sha256').update(email).digest('hex')}`;
    const refusedAfter = async (ms: number) => {
      assert.equal(await redis.pexpire(windowKey, ms), 1, 'the window is there');
      const response = await clientFor(two.url).post('/dashboard/api/session', { email, password: PASSWORD });
      assert.deepEqual([response.status, response.body.error.code], [429, 'too_many_attempts']);
      return { message: response.body.error.message as string, retryAfter: Number(response.headers.get('retry-after')) };
    };
    try {
      const seconds = await refusedAfter(40_000);
      assert.ok(seconds.retryAfter > 30 && seconds.retryAfter <= 40, `Retry-After ${seconds.retryAfter}`);
      assert.equal(seconds.message, `Too many attempts. Try again in ${seconds.retryAfter} seconds.`);
      // 130 s: Retry-After keeps the seconds; the words round up to 3 minutes (anything over 120 s does).
      const minutes = await refusedAfter(130_000);
      assert.ok(minutes.retryAfter > 120 && minutes.retryAfter <= 130, `Retry-After ${minutes.retryAfter}`);
      assert.equal(minutes.message, 'Too many attempts. Try again in 3 minutes.');
    } finally {
      redis.disconnect();
    }
  });
});
