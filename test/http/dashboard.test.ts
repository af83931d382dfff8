/**
 * The dashboard's JSON API (docs/dashboard.md) over HTTP against a real server: sessions, keys, usage, ledger, credit
 * codes, the playground key and the operator's session on /admin/v1. Every response is validated against the served
 * /openapi.json (DashboardClient). Security properties have their own file, test/http/dashboard-security.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../helpers/test-server.ts';
import { DashboardClient } from '../helpers/dashboard-client.ts';
import OpenAI from 'openai';
import { documentedFetch } from '../helpers/openapi-responses.ts';
import { failsWith } from '../helpers/assertions.ts';

const PASSWORD = 'correct horse battery';

describe('dashboard API', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ env: { DEEPSHI_DEFAULT_RPM: '100' } });
  });
  after(async () => {
    await t?.close();
  });

  /** The SDK and the admin API, with every response validated against /openapi.json (t.client/t.admin use the contract). */
  const sdk = (key: string) => new OpenAI({ apiKey: key, baseURL: `${t.url}/v1`, maxRetries: 0 });
  const admin = async (method: string, route: string, body?: unknown): Promise<any> => {
    const response = await new DashboardClient(t.url, null).request(method, route, body, { authorization: `Bearer ${ADMIN_TOKEN}` });
    if (response.status >= 300) throw new Error(`admin ${method} ${route} → ${response.status} ${response.text}`);
    return response.body;
  };
  const balance = async (accountId: string) => (await admin('GET', `/admin/v1/accounts/${accountId}`)).balance as string;

  let counter = 0;
  /** An account with `credits`, a member user of it signed in, and the operator's view. */
  async function member(credits = '5') {
    const account = await admin('POST', '/admin/v1/accounts', { name: `member ${++counter}`, credits });
    const email = `user${counter}-${Date.now()}@example.com`;
    await admin('POST', '/admin/v1/users', { account_id: account.id, email, password: PASSWORD });
    const client = new DashboardClient(t.url);
    await client.signIn(email, PASSWORD);
    return { accountId: account.id as string, email, client };
  }

  it('config is public and says whether sign-up is open', async () => {
    const response = await documentedFetch(`${t.url}/dashboard/api/config`);
    assert.equal(response.status, 200);
    assert.deepEqual(response.body, { signup: 'closed', version: '0.1.0', admin_sign_in: true });
  });

  it('models is public: signed out, every offered model, the same cards /v1/models gives a key without an allowlist', async () => {
    const response = await documentedFetch(`${t.url}/dashboard/api/models`, { headers: { origin: 'https://evil.example' } });
    assert.equal(response.status, 200);
    assert.equal(response.body.object, 'list');
    const ids = response.body.data.map((model: { id: string }) => model.id);
    assert.ok(ids.includes('deepshi-sketch') && ids.includes('deepshi-echo'), ids.join(', '));
    // Never CORS, like every /dashboard/api route; nothing cached.
    for (const [name] of response.headers) assert.doesNotMatch(name, /^access-control-/, `carries ${name}`);
    assert.equal(response.headers.get('cache-control'), 'no-store');

    const everything = await t.createAccount('1');
    const allowed = await sdk(everything.key).models.list();
    assert.deepEqual(response.body.data, allowed.data, 'the same cards, in the same order');
    // Only what this server offers: the catalog's unservable models stay off the public list.
    const catalog = (await admin('GET', '/admin/v1/models')).data as { id: string; offered: boolean }[];
    assert.deepEqual(
      ids,
      catalog.filter((model) => model.offered).map((model) => model.id),
    );
    assert.ok(
      catalog.some((model) => !model.offered && !ids.includes(model.id)),
      'some catalog model is not offered here',
    );
    // A key's allowlist narrows /v1/models, not the public page.
    const narrow = await t.createAccount('1', { models: ['deepshi-sketch'] });
    assert.deepEqual(
      (await sdk(narrow.key).models.list()).data.map((model) => model.id),
      ['deepshi-sketch'],
    );
    assert.deepEqual(
      (await documentedFetch(`${t.url}/dashboard/api/models`)).body.data.map((model: { id: string }) => model.id),
      ids,
    );
  });

  it('sign-in sets an HttpOnly, SameSite=Strict session cookie; the session names the user; sign-out ends it', async () => {
    const { client, email, accountId } = await member();
    assert.match(client.lastSetCookie ?? '', /^deepshi_session=[A-Za-z0-9_-]{43};/);
    assert.match(client.lastSetCookie!, /; HttpOnly/i);
    assert.match(client.lastSetCookie!, /; SameSite=Strict/i);
    assert.match(client.lastSetCookie!, /; Path=\//);
    assert.doesNotMatch(client.lastSetCookie!, /Secure/i, 'plain HTTP: no Secure flag');
    const session = await client.get('/dashboard/api/session');
    assert.equal(session.status, 200);
    assert.deepEqual(session.body.user, { id: session.body.user.id, email, role: 'member', account_id: accountId });
    assert.match(session.body.user.id, /^user_/);
    assert.equal(session.headers.get('cache-control'), 'no-store');

    const cookie = client.cookie;
    const out = await client.delete('/dashboard/api/session');
    assert.equal(out.status, 204);
    assert.match(client.lastSetCookie ?? '', /deepshi_session=;/);
    const stale = new DashboardClient(t.url);
    stale.cookie = cookie;
    const after = await stale.get('/dashboard/api/session');
    assert.equal(after.status, 401);
    assert.equal(after.body.error.code, 'not_signed_in');
  });

  it('a wrong password or unknown email is 401 invalid_credentials, the same message for both', async () => {
    const { email } = await member();
    const client = new DashboardClient(t.url);
    const wrong = await client.post('/dashboard/api/session', { email, password: 'not the password' });
    const unknown = await client.post('/dashboard/api/session', { email: 'nobody@example.com', password: 'not the password' });
    assert.deepEqual([wrong.status, unknown.status], [401, 401]);
    assert.equal(wrong.body.error.code, 'invalid_credentials');
    assert.equal(wrong.body.error.message, unknown.body.error.message);
    assert.equal(client.cookie, undefined);
  });

  it('emails are matched case-insensitively', async () => {
    const { email } = await member();
    const client = new DashboardClient(t.url);
    await client.signIn(`  ${email.toUpperCase()} `, PASSWORD);
  });

  it('sign-up is 403 signup_closed unless DEEPSHI_SIGNUP=open', async () => {
    const response = await new DashboardClient(t.url).post('/dashboard/api/signup', { email: 'new@example.com', password: PASSWORD });
    assert.equal(response.status, 403);
    assert.equal(response.body.error.code, 'signup_closed');
  });

  it('keys: create (secret once), list with last_used_at, use from the SDK, rotate, revoke (SDK gets 403), delete', async () => {
    const { client, accountId } = await member();
    const created = await client.post('/dashboard/api/keys', {
      name: 'ci',
      models: ['deepshi-sketch'],
      limits: { requests_per_minute: 10 },
    });
    assert.equal(created.status, 201);
    assert.match(created.body.key, /^sk-bf-/);
    assert.deepEqual(
      [created.body.account_id, created.body.name, created.body.models, created.body.limits.requests_per_minute, created.body.last_used_at],
      [accountId, 'ci', ['deepshi-sketch'], 10, null],
    );

    const caller = sdk(created.body.key);
    const image = await caller.images.generate({ model: 'deepshi-sketch', prompt: 'a lighthouse' });
    assert.ok(image.data?.[0].b64_json);
    const listed = await eventually(async () => {
      const keys = await client.get('/dashboard/api/keys');
      const key = keys.body.data.find((k: { id: string }) => k.id === created.body.id);
      return key.last_used_at === null ? null : keys.body;
    });
    assert.equal(listed.object, 'list');
    const key = listed.data.find((k: { id: string }) => k.id === created.body.id);
    assert.equal(key.key, undefined, 'the secret is never listed');
    assert.ok(Math.abs(key.last_used_at - Date.now() / 1000) < 120);

    const rotated = await client.post(`/dashboard/api/keys/${created.body.id}/rotate`);
    assert.equal(rotated.status, 200);
    assert.notEqual(rotated.body.key, created.body.key);
    await failsWith(() => caller.models.list(), { status: 401 });
    const fresh = sdk(rotated.body.key);
    await fresh.models.list();

    const revoked = await client.post(`/dashboard/api/keys/${created.body.id}/revoke`);
    assert.equal(revoked.body.status, 'revoked');
    await failsWith(() => fresh.images.generate({ model: 'deepshi-sketch', prompt: 'x' }), { status: 403, code: 'api_key_revoked' });

    const deleted = await client.delete(`/dashboard/api/keys/${created.body.id}`);
    assert.deepEqual(deleted.body, { id: created.body.id, object: 'api_key', deleted: true });
    const gone = await client.get('/dashboard/api/keys');
    assert.equal(
      gone.body.data.some((k: { id: string }) => k.id === created.body.id),
      false,
    );
    assert.equal((await client.post(`/dashboard/api/keys/${created.body.id}/revoke`)).status, 404);
  });

  it('key limits may be tighter than the server default, never looser or unlimited', async () => {
    const { client } = await member();
    for (const limits of [{ requests_per_minute: 101 }, { requests_per_minute: 0 }]) {
      const refused = await client.post('/dashboard/api/keys', { name: 'loose', limits });
      assert.equal(refused.status, 400);
      assert.deepEqual([refused.body.error.code, refused.body.error.param], ['limit_too_high', 'limits.requests_per_minute']);
    }
    // No server default for images per minute (0 = unlimited): any value is allowed.
    const ok = await client.post('/dashboard/api/keys', { name: 'tight', limits: { requests_per_minute: 100, images_per_minute: 0 } });
    assert.equal(ok.status, 201);
    const unknown = await client.post('/dashboard/api/keys', { name: 'x', limits: { bananas_per_minute: 1 } });
    assert.equal(unknown.body.error?.code, 'unknown_parameter', JSON.stringify([unknown.status, unknown.body]));
    const tokens = await client.post('/dashboard/api/keys', { name: 'tokens', limits: { tokens_per_minute: 5000 } });
    assert.equal(tokens.status, 201);
    assert.equal(tokens.body.limits.tokens_per_minute, 5000);
    // Queued async jobs: at most the server's DEEPSHI_DEFAULT_MAX_QUEUED_JOBS (100), never unlimited.
    for (const max_queued_jobs of [101, 0]) {
      const refused = await client.post('/dashboard/api/keys', { name: 'queue', limits: { max_queued_jobs } });
      assert.deepEqual(
        [refused.status, refused.body.error.code, refused.body.error.param],
        [400, 'limit_too_high', 'limits.max_queued_jobs'],
      );
    }
    const queued = await client.post('/dashboard/api/keys', { name: 'queue', limits: { max_queued_jobs: 5 } });
    assert.equal(queued.status, 201);
    assert.equal(queued.body.limits.max_queued_jobs, 5);
  });

  it('usage: every request with key, cost and tokens; filters; keyset paging; CSV; overview spend equals the charges', async () => {
    const { client } = await member('5');
    const a = (await client.post('/dashboard/api/keys', { name: 'a' })).body;
    const b = (await client.post('/dashboard/api/keys', { name: 'b' })).body;
    const costs: number[] = [];
    for (let i = 0; i < 3; i++)
      costs.push(
        (
          (await sdk(a.key).images.generate({ model: 'deepshi-sketch', prompt: `tree ${i}` })).usage as unknown as {
            cost: { total_cost: number };
          }
        ).cost.total_cost,
      );
    const chat = await sdk(b.key).chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'hello there' }] });
    costs.push((chat.usage as unknown as { cost: { total_cost: number } }).cost.total_cost);

    const all = await client.get('/dashboard/api/usage');
    assert.equal(all.body.data.length, 4);
    assert.equal(all.body.has_more, false);
    assert.equal(all.body.next_before, null);
    const chatRow = all.body.data.find((row: { endpoint: string }) => row.endpoint === 'chat.completions');
    assert.equal(chatRow.key_id, b.id);
    assert.deepEqual(chatRow.tokens, { prompt: chat.usage!.prompt_tokens, completion: chat.usage!.completion_tokens });
    assert.equal(Number(chatRow.cost), costs[3]);

    const byKey = await client.get(`/dashboard/api/usage?key_id=${a.id}&status=settled`);
    assert.deepEqual(
      byKey.body.data.map((row: { key_id: string }) => row.key_id),
      [a.id, a.id, a.id],
    );
    assert.equal((await client.get('/dashboard/api/usage?model=deepshi-echo')).body.data.length, 1);
    assert.equal((await client.get('/dashboard/api/usage?endpoint=images.generations')).body.data.length, 3);
    assert.equal((await client.get(`/dashboard/api/usage?from=${Math.floor(Date.now() / 1000) + 3600}`)).body.data.length, 0);
    assert.equal((await client.get('/dashboard/api/usage?to=1')).body.data.length, 0);
    for (const bad of ['status=done', 'from=yesterday', 'limit=0', 'limit=501', 'before=garbage']) {
      const response = await client.get(`/dashboard/api/usage?${bad}`);
      assert.equal(response.status, 400, bad);
      assert.equal(response.body.error.param, bad.split('=')[0]);
    }

    const seen: string[] = [];
    let page = await client.get('/dashboard/api/usage?limit=3');
    seen.push(...page.body.data.map((row: { id: string }) => row.id));
    assert.equal(page.body.has_more, true);
    page = await client.get(`/dashboard/api/usage?limit=3&before=${encodeURIComponent(page.body.next_before)}`);
    seen.push(...page.body.data.map((row: { id: string }) => row.id));
    assert.equal(page.body.has_more, false);
    assert.deepEqual(
      seen,
      all.body.data.map((row: { id: string }) => row.id),
    );

    const csv = await client.get(`/dashboard/api/usage.csv?key_id=${a.id}`);
    assert.equal(csv.status, 200);
    assert.match(csv.headers.get('content-type') ?? '', /^text\/csv/);
    assert.match(csv.headers.get('content-disposition') ?? '', /attachment; filename="deepshi-usage.csv"/);
    const lines = csv.text.trim().split('\r\n');
    assert.equal(lines[0], 'id,created_at,key_id,model,endpoint,status,images,prompt_tokens,completion_tokens,cost');
    assert.equal(lines.length, 4);
    const total = lines.slice(1).reduce((sum, line) => sum + Number(line.split(',').at(-1)), 0);
    assert.equal(
      total.toFixed(9),
      costs
        .slice(0, 3)
        .reduce((x, y) => x + y, 0)
        .toFixed(9),
    );

    const overview = await client.get('/dashboard/api/overview');
    const spent = costs.reduce((x, y) => x + y, 0).toFixed(9);
    assert.equal(Number(overview.body.spend.today).toFixed(9), spent);
    assert.equal(Number(overview.body.spend.last_7_days).toFixed(9), spent);
    assert.equal(Number(overview.body.spend.last_30_days).toFixed(9), spent);
    assert.equal((5 - Number(overview.body.account.balance)).toFixed(9), spent);
    const today = new Date().toISOString().slice(0, 10);
    assert.deepEqual(
      overview.body.daily.map((d: { date: string; model: string }) => [d.date, d.model]),
      [
        [today, 'deepshi-echo'],
        [today, 'deepshi-sketch'],
      ],
    );
    assert.equal(overview.body.recent.length, 4);
  });

  it('ledger pages newest first by id', async () => {
    const { client, accountId } = await member('1');
    for (let i = 0; i < 3; i++) await admin('POST', `/admin/v1/accounts/${accountId}/credits`, { amount: '1', note: `top-up ${i}` });
    const first = await client.get('/dashboard/api/ledger?limit=2');
    assert.deepEqual(
      first.body.data.map((e: { note: string }) => e.note),
      ['top-up 2', 'top-up 1'],
    );
    assert.equal(first.body.has_more, true);
    const second = await client.get(`/dashboard/api/ledger?limit=2&before=${first.body.data[1].id}`);
    assert.deepEqual(
      second.body.data.map((e: { note: string }) => e.note),
      ['top-up 0', 'initial credit'],
    );
    assert.equal(second.body.has_more, false);
  });

  it('credit codes: made by the operator (shown once), redeemed once into the balance and the ledger', async () => {
    const { client, accountId } = await member('0');
    const made = await new DashboardClient(t.url, null).post(
      '/admin/v1/credit-codes',
      { amount: '2.5', count: 2, note: 'promo' },
      { authorization: `Bearer ${ADMIN_TOKEN}` },
    );
    assert.equal(made.status, 201);
    const [code, other] = made.body.data.map((entry: { code: string }) => entry.code);
    const redeemed = await client.post('/dashboard/api/credit-codes/redeem', { code: code.toLowerCase() });
    assert.equal(redeemed.status, 200);
    assert.deepEqual([redeemed.body.amount, redeemed.body.account.balance], ['2.5', '2.5']);
    const again = await client.post('/dashboard/api/credit-codes/redeem', { code });
    assert.deepEqual([again.status, again.body.error.code], [409, 'code_already_redeemed']);
    const bogus = await client.post('/dashboard/api/credit-codes/redeem', { code: 'DSC-0000-0000-0000-0000' });
    assert.deepEqual([bogus.status, bogus.body.error.code], [404, 'invalid_code']);
    const [entry] = (await client.get('/dashboard/api/ledger?limit=1')).body.data;
    assert.deepEqual([entry.kind, entry.available_delta], ['credit', '2.5']);
    assert.match(entry.note, new RegExp(code.slice(0, 8)));

    const listed = await new DashboardClient(t.url, null).get('/admin/v1/credit-codes', { authorization: `Bearer ${ADMIN_TOKEN}` });
    const rows = listed.body.data.filter((row: { code_prefix: string }) =>
      [code, other].some((c: string) => c.startsWith(row.code_prefix)),
    );
    assert.equal(rows.length, 2);
    assert.equal(JSON.stringify(listed.body).includes(code), false, 'listed by prefix only');
    assert.deepEqual(rows.map((row: { redeemed_by: string | null }) => row.redeemed_by).sort(), [accountId, null].sort());
  });

  it('twenty members redeeming one code at once: exactly one is credited', async () => {
    const members = await Promise.all(Array.from({ length: 4 }, () => member('0')));
    const [{ code }] = (await admin('POST', '/admin/v1/credit-codes', { amount: '1' })).data;
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => members[i % 4].client.post('/dashboard/api/credit-codes/redeem', { code })),
    );
    assert.equal(results.filter((r) => r.status === 200).length, 1);
    // The others are told it was redeemed, or, once this IP has failed often enough, throttled (redemption guessing).
    assert.ok(
      results.every((r) => r.status === 200 || r.status === 409 || (r.status === 429 && r.body.error.code === 'too_many_attempts')),
    );
    const balances = await Promise.all(members.map((m) => balance(m.accountId)));
    assert.equal(
      balances.map(Number).reduce((x, y) => x + y, 0),
      1,
    );
  });

  it('the playground key works from the SDK, is never listed, and dies at sign-out', async () => {
    const { client } = await member();
    const issued = await client.post('/dashboard/api/playground-key');
    assert.equal(issued.status, 200);
    assert.ok(issued.body.expires_at > Date.now() / 1000 + 3500 && issued.body.expires_at <= Date.now() / 1000 + 3600);
    const caller = sdk(issued.body.key);
    await caller.images.generate({ model: 'deepshi-sketch', prompt: 'a playground' });
    assert.deepEqual((await client.get('/dashboard/api/keys')).body.data, []);
    const usage = await client.get('/dashboard/api/usage');
    assert.equal(usage.body.data.length, 1);
    await client.delete('/dashboard/api/session');
    await failsWith(() => caller.models.list(), { status: 401 });
  });

  it('changing the password ends the other sessions (and their playground keys), keeps this one', async () => {
    const { client, email } = await member();
    const other = new DashboardClient(t.url);
    await other.signIn(email, PASSWORD);
    const playground = (await other.post('/dashboard/api/playground-key')).body.key;
    const wrong = await client.post('/dashboard/api/password', { current_password: 'not it at all', new_password: 'a brand new secret' });
    assert.deepEqual([wrong.status, wrong.body.error.code], [401, 'invalid_credentials']);
    const weak = await client.post('/dashboard/api/password', { current_password: PASSWORD, new_password: 'short' });
    assert.deepEqual([weak.status, weak.body.error.code], [400, 'weak_password']);
    const changed = await client.post('/dashboard/api/password', { current_password: PASSWORD, new_password: 'a brand new secret' });
    assert.equal(changed.status, 204);
    assert.equal((await client.get('/dashboard/api/session')).status, 200);
    assert.equal((await other.get('/dashboard/api/session')).status, 401);
    await failsWith(() => sdk(playground).models.list(), { status: 401 });
    assert.equal((await new DashboardClient(t.url).post('/dashboard/api/session', { email, password: PASSWORD })).status, 401);
    await new DashboardClient(t.url).signIn(email, 'a brand new secret');
  });

  it('the operator signs in with the admin token, uses /admin/v1 with the session, and acts on any account', async () => {
    const { accountId } = await member('3');
    const operator = new DashboardClient(t.url);
    const wrong = await operator.post('/dashboard/api/session', { admin_token: 'not-the-token-at-all' });
    assert.equal(wrong.status, 401);
    const signed = await operator.post('/dashboard/api/session', { admin_token: ADMIN_TOKEN });
    assert.deepEqual(signed.body.user, { id: 'operator', email: null, role: 'operator', account_id: null });

    const search = await operator.get(`/admin/v1/accounts?q=${accountId.slice(-10)}`);
    assert.deepEqual(
      search.body.data.map((a: { id: string }) => a.id),
      [accountId],
    );
    const made = await operator.post('/admin/v1/accounts', { name: 'made in the console', credits: '1' });
    assert.equal(made.status, 201);
    const debited = await operator.post(`/admin/v1/accounts/${accountId}/debits`, { amount: '0.5', note: 'correction' });
    assert.equal(debited.body.balance, '2.5');
    const over = await operator.post(`/admin/v1/accounts/${accountId}/debits`, { amount: '100' });
    assert.deepEqual([over.status, over.body.error.code], [400, 'insufficient_balance']);
    const ledger = await operator.get(`/dashboard/api/ledger?account_id=${accountId}&limit=1`);
    assert.deepEqual(
      [ledger.body.data[0].kind, ledger.body.data[0].available_delta, ledger.body.data[0].note],
      ['adjustment', '-0.5', 'correction'],
    );
    const overview = await operator.get(`/dashboard/api/overview?account_id=${accountId}`);
    assert.equal(overview.body.account.id, accountId);
    const missing = await operator.get('/dashboard/api/overview');
    assert.deepEqual([missing.status, missing.body.error.code], [400, 'missing_account_id']);

    const user = await operator.post('/admin/v1/users', {
      account_id: made.body.id,
      email: `console-${Date.now()}@example.com`,
      password: PASSWORD,
    });
    assert.equal(user.status, 201);
    const taken = await operator.post('/admin/v1/users', { account_id: made.body.id, email: user.body.email, password: PASSWORD });
    assert.deepEqual([taken.status, taken.body.error.code], [409, 'email_taken']);
    const users = await operator.get(`/admin/v1/users?account_id=${made.body.id}`);
    assert.deepEqual(
      users.body.data.map((u: { email: string }) => u.email),
      [user.body.email],
    );

    const models = await operator.get('/admin/v1/models');
    const sketch = models.body.data.find((m: { id: string }) => m.id === 'deepshi-sketch');
    assert.deepEqual([sketch.offered, sketch.unavailable_reason], [true, null]);
    const closed = models.body.data.find((m: { offered: boolean }) => !m.offered);
    assert.match(closed.unavailable_reason, /is not set/);
    const stats = await operator.get('/admin/v1/stats');
    assert.ok(stats.body.http_requests > 0);
    assert.ok(stats.body.images >= 1);

    // An operator user (not the token) gets the same console.
    const email = `op-${Date.now()}@example.com`;
    await operator.post('/admin/v1/users', { email, password: PASSWORD, role: 'operator' });
    const person = new DashboardClient(t.url);
    assert.equal((await person.signIn(email, PASSWORD)).role, 'operator');
    assert.equal((await person.get('/admin/v1/accounts?limit=1')).status, 200);

    // A member's session never opens /admin/v1.
    const { client } = await member();
    const refused = await client.get('/admin/v1/accounts');
    assert.equal(refused.status, 401);
  });
});

describe('dashboard API with DEEPSHI_SIGNUP=open', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ env: { DEEPSHI_SIGNUP: 'open', DEEPSHI_SIGNUP_CREDITS: '1.25' } });
  });
  after(async () => {
    await t?.close();
  });

  it('signs up a new account with the sign-up credit, signed in at once; the email is then taken', async () => {
    const client = new DashboardClient(t.url);
    const config = await client.get('/dashboard/api/config');
    assert.equal(config.body.signup, 'open');
    const signed = await client.post('/dashboard/api/signup', { email: 'Fresh@Example.com', password: PASSWORD });
    assert.equal(signed.status, 201);
    assert.equal(signed.body.user.email, 'fresh@example.com');
    const overview = await client.get('/dashboard/api/overview');
    assert.equal(overview.body.account.balance, '1.25');
    const [entry] = (await client.get('/dashboard/api/ledger')).body.data;
    assert.deepEqual([entry.kind, entry.note], ['credit', 'sign-up credit']);
    const again = await new DashboardClient(t.url).post('/dashboard/api/signup', { email: 'fresh@example.com', password: PASSWORD });
    assert.deepEqual([again.status, again.body.error.code], [409, 'email_taken']);
    const bad = await new DashboardClient(t.url).post('/dashboard/api/signup', { email: 'not-an-email', password: PASSWORD });
    assert.deepEqual([bad.status, bad.body.error.code], [400, 'invalid_email']);
  });
});

async function eventually<T>(read: () => Promise<T | null>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
