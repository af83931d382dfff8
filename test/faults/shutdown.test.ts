import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts';
import { deadPort } from '../helpers/ports.ts';
import { npmStartArgs } from '../helpers/npm-start.ts';
import { FaultProxy } from './fault-proxy.ts';
import { SECRETS, faultCatalog } from './harness.ts';
import { startCompatibleSimulator, type CompatibleSimulator } from '../simulators/openai-compatible-simulator.ts';
import { registerDeepshiServer } from '../helpers/documented-http.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ADMIN_TOKEN = 'shutdown-admin-token-0123456789abcdef';

/**
 * SIGTERM to a real server process (`node dist/main.js`, what `npm start` runs) while generations run
 * longer than its grace period: at the end of the grace period each remaining caller is answered (503
 * server_shutting_down as JSON, an `error` event on a stream), every hold is released at once (not left for the
 * sweeper), and the process exits 0. Before, callers got a socket hang-up and the holds waited minutes.
 */
describe('SIGTERM with generations longer than the grace period', () => {
  let sim: CompatibleSimulator;
  let proxy: FaultProxy;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-shutdown-'));

  before(async () => {
    sim = await startCompatibleSimulator({ apiKey: SECRETS.compat });
    proxy = await new FaultProxy(sim.url).start();
  });
  after(async () => {
    await proxy.close();
    await sim.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers every caller 503 or an error event, releases every hold, exits 0', async () => {
    const port = await deadPort();
    const url = `http://127.0.0.1:${port}`;
    const database = path.join(dir, 'deepshi.db');
    fs.writeFileSync(path.join(dir, 'catalog.json'), faultCatalog());
    const child = spawn(process.execPath, npmStartArgs(), {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        DATABASE_URL: `sqlite:${database}`,
        DEEPSHI_CATALOG: path.join(dir, 'catalog.json'),
        DEEPSHI_ADMIN_TOKEN: ADMIN_TOKEN,
        DEEPSHI_DEV_ACCOUNT: 'false',
        LOG_LEVEL: 'info',
        DEEPSHI_SHUTDOWN_GRACE_MS: '500',
        DEEPSHI_GENERATION_TIMEOUT_MS: '60000',
        DEEPSHI_KEEPALIVE_MS: '100',
        DEEPSHI_BANANA_PRO_API_KEY: SECRETS.compat,
        DEEPSHI_BANANA_PRO_BASE_URL: proxy.url,
      },
    });
    let logs = '';
    child.stdout.on('data', (chunk) => (logs += chunk));
    child.stderr.on('data', (chunk) => (logs += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    child.on('exit', registerDeepshiServer(url));
    try {
      await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 'the server to start', 20_000);
      const admin = async (route: string, body: unknown) =>
        (
          await fetch(`${url}${route}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
            body: JSON.stringify(body),
          })
        ).json();
      const account = await admin('/admin/v1/accounts', { name: 'shutdown', credits: '10' });
      const { key } = await admin('/admin/v1/keys', { account_id: account.id, name: 'k' });

      // Generations that never finish upstream: the proxy holds every call.
      proxy.set({ method: 'POST', path: /^\/v1\/images\//, action: { kind: 'hang' } });
      const call = (body: Record<string, unknown>) =>
        fetch(`${url}/v1/images/generations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'deepshi-banana-pro', prompt: 'forever', ...body }),
        }).then(
          async (response) => ({ status: response.status, text: await response.text() }),
          (error: Error) => ({ status: 0, text: error.message }),
        );
      const calls = [call({}), call({ prompt: 'forever 2' }), call({ stream: true })];
      await waitFor(async () => proxy.seen.length >= 3, 'the three generations to reach the upstream', 10_000);

      child.kill('SIGTERM');
      const [first, second, streamed] = await Promise.all(calls);
      for (const answer of [first, second]) {
        assert.equal(answer.status, 503, answer.text);
        assert.equal(JSON.parse(answer.text).error.code, 'server_shutting_down');
      }
      assert.equal(streamed.status, 200);
      const events = streamed.text
        .split('\n\n')
        .filter((frame) => frame.includes('data: '))
        .map((frame) => JSON.parse(frame.slice(frame.indexOf('data: ') + 6)));
      assert.equal(events.at(-1).type, 'error', streamed.text);
      assert.equal(events.at(-1).error.code, 'server_shutting_down');
      assert.equal(await exited, 0, logs);

      const store = new SqliteStore(database);
      try {
        const requests = await store.listRequests(account.id, 10);
        assert.equal(requests.length, 3);
        for (const request of requests) {
          assert.equal(request.status, 'released', 'released at shutdown, not left for the sweeper');
          assert.match(String(request.detail?.reason), /^shutdown/);
        }
        const state = await store.getAccount(account.id);
        assert.equal(state?.held, 0n);
        assert.equal(state?.balance, 10_000_000_000n);
      } finally {
        await store.close();
      }
      assert.match(logs, /they were stopped, answered 503 and their holds released/);
    } finally {
      proxy.clear();
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
