/**
 * kill -9 of a real server process (what `npm start` runs: `node dist/main.js`) under concurrent load, on SQLite and on
 * PostgreSQL: 48 idempotent generations sent in batches against an upstream that takes 0.3 s, the process killed
 * once 8 were answered (some settled, some in flight, some never received), then restarted on the same database. Afterwards:
 * the ledger invariant holds, the restarted instance's sweep leaves nothing held, every request has exactly one hold
 * and one resolution, SQLite's integrity_check is ok, and every caller's retry with its Idempotency-Key gets the
 * settled result when the first attempt was charged (even if that caller received nothing: the rule of
 * docs/reliability.md) or runs once afresh when it was not. No key is charged twice, none answers "response lost".
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { openStore } from '../../src/store/open-store.ts';
import type { Store } from '../../src/store/types.ts';
import { deadPort } from '../helpers/ports.ts';
import { npmStartArgs } from '../helpers/npm-start.ts';
import { assertLedgerInvariant } from '../store/store-contract.ts';
import { startCompatibleSimulator, type CompatibleSimulator } from '../simulators/openai-compatible-simulator.ts';
import { FaultProxy } from './fault-proxy.ts';
import { SECRETS, faultCatalog } from './harness.ts';
import { registerDeepshiServer } from '../helpers/documented-http.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ADMIN_TOKEN = 'crash-admin-token-0123456789abcdef';
const POSTGRES = process.env.DEEPSHI_TEST_POSTGRES_URL;
const REQUESTS = 48;

interface Outcome {
  status: number;
  requestId: string | null;
  body: string;
}

describe('kill -9 under concurrent load', () => {
  let sim: CompatibleSimulator;
  let proxy: FaultProxy;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-crash-'));

  before(async () => {
    sim = await startCompatibleSimulator({ apiKey: SECRETS.compat });
    proxy = await new FaultProxy(sim.url).start();
    fs.writeFileSync(path.join(dir, 'catalog.json'), faultCatalog());
  });
  after(async () => {
    await proxy.close();
    await sim.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('SQLite: ledger exact, nothing held after the sweep, integrity_check ok, idempotent retries get the settled result', async () => {
    const file = path.join(dir, 'crash.db');
    await crashAndRecover(`sqlite:${file}`);
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    } finally {
      db.close();
    }
  });

  it('PostgreSQL: ledger exact, nothing held after the sweep, idempotent retries get the settled result', {
    skip: POSTGRES ? false : 'DEEPSHI_TEST_POSTGRES_URL not set',
  }, async () => {
    const schema = `deepshi_crash_${process.pid}_${randomUUID().replace(/-/g, '').slice(0, 8)}`;
    const adminClient = new pg.Client({ connectionString: POSTGRES });
    await adminClient.connect();
    await adminClient.query(`CREATE SCHEMA ${schema}`);
    try {
      const url = new URL(POSTGRES!);
      url.searchParams.set('options', `-c search_path=${schema}`);
      await crashAndRecover(url.toString());
    } finally {
      await adminClient.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
      await adminClient.end();
    }
  });

  async function crashAndRecover(databaseUrl: string): Promise<void> {
    proxy.set({ method: 'POST', path: /^\/v1\/images\//, action: { kind: 'delay', ms: 300 } });
    const where = { catalog: path.join(dir, 'catalog.json'), upstream: proxy.url };
    let server = await startInstance(databaseUrl, where);
    let store: Store | undefined;
    try {
      const admin = async (route: string, body: unknown) =>
        (
          await fetch(`${server.url}${route}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
            body: JSON.stringify(body),
          })
        ).json();
      const account = await admin('/admin/v1/accounts', { name: 'crash', credits: '100' });
      const { key } = await admin('/admin/v1/keys', { account_id: account.id, name: 'k' });
      const generate = (url: string, index: number): Promise<Outcome> =>
        fetch(`${url}/v1/images/generations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': `crash-${index}` },
          body: JSON.stringify({ model: 'deepshi-banana-pro', prompt: `crash ${index}`, size: '1024x1024' }),
        }).then(
          async (response) => ({ status: response.status, requestId: response.headers.get('x-request-id'), body: await response.text() }),
          () => ({ status: 0, requestId: null, body: '' }),
        );

      // 48 requests in batches of 6 every 0.1 s; the kill comes once 8 have been answered: some settled, others in
      // flight or not received yet (the 48th is sent after the kill, when the batches outlast it).
      const first: Array<Promise<Outcome>> = [];
      let answered = 0;
      const killed = waitFor(async () => answered >= 8, '8 answers before the kill', 40_000).then(() => server.process.kill('SIGKILL'));
      for (let index = 0; index < REQUESTS; index++) {
        first.push(
          generate(server.url, index).then((outcome) => {
            answered += outcome.status === 200 ? 1 : 0;
            return outcome;
          }),
        );
        if (index % 6 === 5) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await killed;
      const outcomes = await Promise.all(first);
      await server.exited;
      assert.ok(
        outcomes.some((outcome) => outcome.status === 200),
        'some requests finished before the kill',
      );
      assert.ok(
        outcomes.some((outcome) => outcome.status === 0),
        'some callers lost their connection',
      );

      // Restarted on the same database: its start-up sweep and the sweeper release the dead instance's holds.
      server = await startInstance(databaseUrl, where);
      store = await openStore(databaseUrl);
      await waitFor(async () => (await store!.getAccount(account.id))?.held === 0n, "the dead instance's holds to be released", 30_000);
      const beforeRetries = await store.listRequests(account.id, 1000);
      assert.deepEqual(
        beforeRetries.filter((request) => request.status === 'held'),
        [],
      );
      const settledBefore = new Map(
        beforeRetries.filter((request) => request.status === 'settled').map((request) => [request.id, request]),
      );

      // Every caller retries with its key.
      proxy.set();
      let lostButReplayed = 0;
      for (let index = 0; index < REQUESTS; index++) {
        const original = outcomes[index];
        const retry = await fetchRetry(server.url, key, index);
        assert.equal(retry.status, 200, `retry ${index}: ${retry.body.slice(0, 300)}`);
        const replayedFrom = retry.headers.get('x-deepshi-original-request-id');
        const replayed = retry.headers.get('idempotent-replayed') === 'true';
        if (original.status === 200) {
          assert.ok(replayed, `retry ${index} of a delivered request is a replay`);
          assert.equal(replayedFrom, original.requestId);
          assert.equal(retry.body, original.body, `retry ${index} gets the same body`);
        } else if (replayed) {
          // Charged before the kill though its caller got nothing: the retry gets the settled result.
          assert.ok(settledBefore.has(replayedFrom!), `retry ${index} replays a request that was settled before the kill`);
          lostButReplayed++;
        }
      }
      const requests = await store.listRequests(account.id, 1000);
      const ledger = await store.listLedger(account.id, 10_000);
      for (const request of requests) {
        const kinds = ledger
          .filter((entry) => entry.requestId === request.id)
          .map((entry) => entry.kind)
          .sort();
        assert.deepEqual(
          kinds,
          ['hold', request.status === 'settled' ? 'settle' : 'release'].sort(),
          `request ${request.id}: one hold, one resolution`,
        );
      }
      const settled = requests.filter((request) => request.status === 'settled');
      assert.equal(settled.length, REQUESTS, 'each key charged exactly once, before the kill or on its retry');
      await assertLedgerInvariant(store, account.id);
      const state = await store.getAccount(account.id);
      assert.equal(state?.held, 0n);
      assert.equal(state?.balance, 100_000_000_000n - settled.reduce((sum, request) => sum + request.cost, 0n));
      // Informational: how often this run hit the window between the charge and the answer.
      process.stdout.write(
        `# crash (${databaseUrl.split(':')[0]}): ${outcomes.filter((o) => o.status === 200).length} answered, ${lostButReplayed} charged but unanswered and replayed\n`,
      );
    } finally {
      await store?.close();
      server.process.kill('SIGKILL');
      await server.exited;
      proxy.clear();
    }
  }
});

async function fetchRetry(url: string, key: string, index: number): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await fetch(`${url}/v1/images/generations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': `crash-${index}` },
    body: JSON.stringify({ model: 'deepshi-banana-pro', prompt: `crash ${index}`, size: '1024x1024' }),
  });
  return { status: response.status, headers: response.headers, body: await response.text() };
}

async function startInstance(
  databaseUrl: string,
  where: { catalog: string; upstream: string },
): Promise<{ url: string; process: ChildProcess; exited: Promise<number | null> }> {
  const port = await deadPort();
  const child = spawn(process.execPath, npmStartArgs(), {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl,
      DEEPSHI_CATALOG: where.catalog,
      DEEPSHI_ADMIN_TOKEN: ADMIN_TOKEN,
      DEEPSHI_DEV_ACCOUNT: 'false',
      LOG_LEVEL: 'warn',
      REDIS_URL: '',
      // Short, so the dead instance's holds expire soon after the kill; long enough that a 300 ms upstream call still
      // finishes when the machine is loaded (at 1.5 s every call timed out at a load average of 9 on 2 cores).
      DEEPSHI_GENERATION_TIMEOUT_MS: '6000',
      DEEPSHI_HOLD_GRACE_MS: '500',
      DEEPSHI_SWEEP_INTERVAL_MS: '200',
      DEEPSHI_BANANA_PRO_API_KEY: SECRETS.compat,
      DEEPSHI_BANANA_PRO_BASE_URL: where.upstream,
    },
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const url = `http://127.0.0.1:${port}`;
  child.on('exit', registerDeepshiServer(url));
  await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 'the server to start', 20_000);
  return { url, process: child, exited };
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
