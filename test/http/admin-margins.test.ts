/**
 * GET /admin/v1/margins (docs/dashboard.md): per model, what callers paid and what the upstreams billed, over the last
 * `days` UTC days. Real generations through grok-imagine's adapter against the xAI simulator (which reports
 * `usage.cost_in_usd_ticks`) and the offline deepshi-sketch (no upstream bill); the answer must match the store's
 * request rows to the nano. Every response is validated against the served /openapi.json.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { formatUsd, parseUsd } from '../../src/domain/money.ts';
import type { RequestRecord } from '../../src/store/types.ts';
import { DashboardClient } from '../helpers/dashboard-client.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../helpers/test-server.ts';
import { startXaiSimulator, type XaiSimulator } from '../simulators/xai-simulator.ts';

const DAY = 86_400_000;
const PASSWORD = 'correct horse battery';
/** 1 xAI tick = 1e-10 USD = 0.1 nano; a part of a nano counts as a whole one (src/providers/xai). */
/** parseUsd takes amounts to charge, never negative; a margin may be. */
const signedNanos = (usd: string) => (usd.startsWith('-') ? -parseUsd(usd.slice(1)) : parseUsd(usd));
const ticksToNanos = (...ticks: number[]) => ticks.reduce((sum, each) => sum + (BigInt(each) + 9n) / 10n, 0n);

describe('GET /admin/v1/margins', () => {
  let t: TestServer;
  let xai: XaiSimulator;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-margins-'));
  const databaseFile = path.join(dir, 'deepshi.db');
  const accounts: string[] = [];
  let oldRequest: string;

  before(async () => {
    xai = await startXaiSimulator({ apiKey: 'sk-sim' });
    t = await startTestServer({ env: { XAI_API_KEY: 'sk-sim', XAI_BASE_URL: xai.url, DATABASE_URL: `sqlite:${databaseFile}` } });
    const first = await t.createAccount('10');
    const second = await t.createAccount('10');
    accounts.push(first.accountId, second.accountId);
    // The xAI price list's own figure, a bill above what the caller can be charged (a loss), and a small one.
    xai.queue({ kind: 'images' }, { kind: 'images', ticks: 900_000_000 }, { kind: 'images', ticks: 10_000_003 });
    await t.client(first.key).images.generate({ model: 'grok-imagine', prompt: 'a lighthouse' });
    await t.client(second.key).images.generate({ model: 'grok-imagine', prompt: 'a lighthouse at a loss' });
    await t.client(second.key).images.generate({ model: 'grok-imagine', prompt: 'a cheap lighthouse' });
    await t.client(first.key).images.generate({ model: 'deepshi-sketch', prompt: 'a sketch' });
    await t.client(second.key).images.generate({ model: 'deepshi-sketch', prompt: 'another sketch', n: 2 });
    // One more grok-imagine request, moved 40 days into the past: only a long enough period counts it.
    await t.client(first.key).images.generate({ model: 'grok-imagine', prompt: 'an old lighthouse' });
    const rows = await requestRows();
    oldRequest = rows.find((row) => row.model === 'grok-imagine' && row.createdAt === Math.max(...rows.map((r) => r.createdAt)))!.id;
    const db = new Database(databaseFile);
    db.pragma('busy_timeout = 5000');
    assert.equal(db.prepare('UPDATE requests SET created_at = created_at - ? WHERE id = ?').run(40 * DAY, oldRequest).changes, 1);
    db.close();
  });
  after(async () => {
    await t?.close();
    await xai?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const requestRows = async (): Promise<RequestRecord[]> =>
    (await Promise.all(accounts.map((id) => t.server.store.listRequests(id, 100)))).flat();

  /** The answer computed independently from the store's rows: settled requests created at or after `since` (ms). */
  async function expected(since: number) {
    const byModel = new Map<string, { requests: number; charged: bigint; known: number; chargedKnown: bigint; upstream: bigint }>();
    for (const row of await requestRows()) {
      if (row.status !== 'settled' || row.createdAt < since) continue;
      const figures = byModel.get(row.model) ?? { requests: 0, charged: 0n, known: 0, chargedKnown: 0n, upstream: 0n };
      figures.requests++;
      figures.charged += row.cost;
      if (row.upstreamCost !== null && row.upstreamCost !== undefined) {
        figures.known++;
        figures.chargedKnown += row.cost;
        figures.upstream += row.upstreamCost;
      }
      byModel.set(row.model, figures);
    }
    return [...byModel.entries()]
      .sort(([a, x], [b, y]) => (x.charged === y.charged ? a.localeCompare(b) : x.charged > y.charged ? -1 : 1))
      .map(([model, f]) => ({
        model,
        requests: f.requests,
        charged: formatUsd(f.charged),
        requests_with_upstream_cost: f.known,
        charged_with_upstream_cost: formatUsd(f.chargedKnown),
        upstream_cost: f.known ? formatUsd(f.upstream) : null,
        margin: f.known ? formatUsd(f.chargedKnown - f.upstream) : null,
      }));
  }

  const get = (query = '') => new DashboardClient(t.url, null).get(`/admin/v1/margins${query}`, { authorization: `Bearer ${ADMIN_TOKEN}` });

  it('per model over the last 30 UTC days by default: charged, upstream bill and margin match the request rows exactly', async () => {
    const before = Date.now();
    const response = await get();
    const startOfPeriod = (now: number) => (Math.floor(now / DAY) * DAY - 29 * DAY) / 1000;
    assert.equal(response.status, 200);
    assert.equal(response.body.object, 'margins');
    assert.equal(response.body.days, 30);
    assert.ok([startOfPeriod(before), startOfPeriod(Date.now())].includes(response.body.since), String(response.body.since));
    assert.deepEqual(response.body.data, await expected(response.body.since * 1000));

    const grok = response.body.data.find((m: { model: string }) => m.model === 'grok-imagine');
    const sketch = response.body.data.find((m: { model: string }) => m.model === 'deepshi-sketch');
    // The three recent grok-imagine requests, each with the bill the simulator reported; not the one 40 days old.
    assert.equal(grok.requests, 3);
    assert.equal(grok.requests_with_upstream_cost, 3);
    assert.equal(grok.upstream_cost, formatUsd(ticksToNanos(200_000_000, 900_000_000, 10_000_003)));
    assert.equal(signedNanos(grok.margin), parseUsd(grok.charged_with_upstream_cost) - parseUsd(grok.upstream_cost));
    // The $0.09 bill exceeds any charge of a $0.02 image: the loss shows, unclamped.
    assert.match(grok.margin, /^-\d/);
    const rows = (await requestRows()).filter((row) => row.model === 'grok-imagine' && row.id !== oldRequest);
    const lossRow = rows.find((row) => row.upstreamCost === ticksToNanos(900_000_000))!;
    assert.ok(lossRow.cost < lossRow.upstreamCost!, 'the caller paid less than the upstream billed');
    // deepshi-sketch has no upstream: charged, nothing known of a bill, no margin made up.
    assert.equal(sketch.requests, 2);
    assert.equal(sketch.requests_with_upstream_cost, 0);
    assert.deepEqual([sketch.charged_with_upstream_cost, sketch.upstream_cost, sketch.margin], ['0', null, null]);

    const total = response.body.total;
    const sum = (field: string) => response.body.data.reduce((acc: bigint, m: Record<string, string>) => acc + parseUsd(m[field]), 0n);
    assert.deepEqual(total, {
      requests: grok.requests + sketch.requests,
      charged: formatUsd(sum('charged')),
      requests_with_upstream_cost: 3,
      charged_with_upstream_cost: grok.charged_with_upstream_cost,
      upstream_cost: grok.upstream_cost,
      margin: grok.margin,
    });
  });

  it('days sets the period: a year counts the request from 40 days ago, today alone matches today’s rows', async () => {
    const year = await get('?days=366');
    assert.equal(year.status, 200);
    assert.equal(year.body.days, 366);
    assert.deepEqual(year.body.data, await expected(year.body.since * 1000));
    const grok = year.body.data.find((m: { model: string }) => m.model === 'grok-imagine');
    assert.equal(grok.requests, 4);
    const old = (await t.server.store.getRequest(oldRequest))!;
    assert.equal(grok.upstream_cost, formatUsd(ticksToNanos(200_000_000, 900_000_000, 10_000_003) + old.upstreamCost!));

    const today = await get('?days=1');
    assert.equal(today.status, 200);
    assert.equal((today.body.since * 1000) % DAY, 0, 'the period starts at 00:00 UTC');
    assert.deepEqual(today.body.data, await expected(today.body.since * 1000));
  });

  it('a days outside 1–366 or not a whole number is 400 with param days', async () => {
    for (const days of ['0', '367', '-1', '1.5', 'abc', '', '1e2', '30&days=2']) {
      const response = await get(`?days=${days}`);
      assert.equal(response.status, 400, `days=${days}`);
      assert.equal(response.body.error.type, 'invalid_request_error');
      assert.equal(response.body.error.param, 'days');
      assert.match(response.body.error.message, /1 to 366/);
    }
  });

  it('needs the admin token or an operator session: 401 without, 401 for a member session like every /admin/v1 route', async () => {
    const anonymous = await new DashboardClient(t.url, null).get('/admin/v1/margins');
    assert.deepEqual([anonymous.status, anonymous.body.error.code], [401, 'invalid_admin_token']);
    const wrong = await new DashboardClient(t.url, null).get('/admin/v1/margins', { authorization: 'Bearer not-the-token' });
    assert.equal(wrong.status, 401);

    const email = `member-${Date.now()}@example.com`;
    await t.admin('POST', '/admin/v1/users', { account_id: accounts[0], email, password: PASSWORD });
    const member = new DashboardClient(t.url);
    await member.signIn(email, PASSWORD);
    const refused = await member.get('/admin/v1/margins');
    assert.equal(refused.status, (await member.get('/admin/v1/accounts')).status);
    assert.deepEqual([refused.status, refused.body.error.code], [401, 'invalid_admin_token']);

    // The operator's dashboard session sees the same answer as the token.
    const operator = new DashboardClient(t.url);
    assert.equal((await operator.post('/dashboard/api/session', { admin_token: ADMIN_TOKEN })).status, 200);
    const viaSession = await operator.get('/admin/v1/margins?days=7');
    assert.equal(viaSession.status, 200);
    assert.deepEqual(viaSession.body, (await get('?days=7')).body);
  });
});
