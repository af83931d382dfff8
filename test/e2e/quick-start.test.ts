import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { registerDeepshiServer } from '../helpers/documented-http.ts';
import { npmStartArgs } from '../helpers/npm-start.ts';

/**
 * The README's quick start, as a newcomer runs it: the server process starts with the embedded defaults,
 * prints a development key and a working curl line, serves it, and shuts down gracefully on SIGTERM.
 */
const ROOT = path.resolve(import.meta.dirname, '../..');

interface Child {
  process: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/**
 * Exactly the command `npm start` runs (package.json), with this Node binary: a broken script or Node flag fails
 * here. Spawned directly rather than through npm so that SIGTERM reaches the server itself.
 */
function startMain(env: Record<string, string>): Child {
  const child = spawn(process.execPath, npmStartArgs(), { cwd: ROOT, env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { process: child, stdout: () => stdout, stderr: () => stderr, exited };
}

async function waitFor(predicate: () => boolean, what: string, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('quick start (npm start)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-e2e-'));
  const children: Child[] = [];
  after(() => {
    for (const child of children) child.process.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('prints a development key and a curl line that works; logs hold neither the key nor the prompt; SIGTERM drains', async () => {
    const child = startMain({ PORT: '0', HOST: '127.0.0.1', DATABASE_URL: `sqlite:${path.join(dir, 'q.db')}`, LOG_LEVEL: 'info' });
    children.push(child);
    await waitFor(() => /curl (\S+)/.test(child.stdout()), 'the curl line');
    const key = /(sk-bf-[0-9A-Za-z]{46})/.exec(child.stdout())![1];
    const url = /curl (\S+)/.exec(child.stdout())![1];
    const unregister = registerDeepshiServer(url);
    child.process.on('exit', unregister);
    const body = /-d '([^']+)'/.exec(child.stdout())![1];

    // The printed curl line, run as printed.
    const response = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body,
    });
    assert.equal(response.status, 200);
    const json = await response.json();
    assert.equal(json.model, 'deepshi-sketch');
    assert.equal(json.usage.cost.total_cost, 0.001);

    // Beside the key: the dashboard's URL and a development sign-in that works.
    const dashboard = /The dashboard: (\S+)/.exec(child.stdout())![1];
    assert.equal(dashboard, `${new URL(url).origin}/`);
    const [, email, password] = /Sign in as (\S+) with the password \(shown once\): (\S+)/.exec(child.stdout())!;
    assert.equal(email, 'dev@localhost');
    const signIn = await fetch(`${new URL(url).origin}/dashboard/api/session`, {
      method: 'POST',
      headers: { origin: new URL(url).origin, 'content-type': 'application/json' },
      body: JSON.stringify({ email, password }),
    });
    assert.equal(signIn.status, 200);
    const signedIn = await signIn.json();
    const keyAccount = await (await fetch(`${new URL(url).origin}/v1/account`, { headers: { authorization: `Bearer ${key}` } })).json();
    assert.equal(signedIn.user.account_id, keyAccount.id, 'the sign-in is for the development account');

    // A slow generation in flight when SIGTERM arrives still completes, is settled, and the process exits 0.
    const secretPrompt = 'a very particular secret prompt about herons';
    const slow = fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'deepshi-sketch', prompt: secretPrompt, width: 4096, height: 4096, output_format: 'webp', n: 2 }),
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.process.kill('SIGTERM');
    const slowResponse = await slow;
    assert.equal(slowResponse.status, 200);
    assert.equal((await slowResponse.json()).data.length, 2);
    assert.equal(await child.exited, 0);

    const logLines = child
      .stdout()
      .split('\n')
      .filter((line) => line.startsWith('{'));
    assert.ok(logLines.length > 0);
    for (const line of logLines) {
      assert.ok(!line.includes(key), 'no key in the logs');
      assert.ok(!line.includes(key.slice(6, 26)), 'no part of the secret in the logs');
      assert.ok(!line.includes('secret prompt'), 'no prompt in the logs');
      assert.ok(!line.includes(password), 'no dev password in the logs');
    }

    // Restarting on the same database does not create a second development account.
    const again = startMain({ PORT: '0', HOST: '127.0.0.1', DATABASE_URL: `sqlite:${path.join(dir, 'q.db')}`, LOG_LEVEL: 'info' });
    children.push(again);
    await waitFor(() => /Server listening/.test(again.stdout()), 'the second start');
    assert.ok(!again.stdout().includes('sk-bf-'));
    assert.ok(!again.stdout().includes('Sign in as'));
    again.process.kill('SIGTERM');
    assert.equal(await again.exited, 0);
  });

  it('a bad configuration stops start-up with a message a person can act on', async () => {
    const child = startMain({ PORT: 'eighty', DATABASE_URL: `sqlite:${path.join(dir, 'bad.db')}` });
    children.push(child);
    assert.equal(await child.exited, 2);
    assert.match(child.stderr(), /PORT must be a whole number between 0 and 65535; got "eighty"/);

    const catalog = path.join(dir, 'broken.yaml');
    fs.writeFileSync(catalog, 'version: 1\nmodels:\n  - id: x\n    owned_by: me\n');
    const broken = startMain({ PORT: '0', DEEPSHI_CATALOG: catalog, DATABASE_URL: `sqlite:${path.join(dir, 'bad2.db')}` });
    children.push(broken);
    assert.equal(await broken.exited, 2);
    assert.match(broken.stderr(), /model catalog .* is invalid:\n {2}- models\[0\]\.\w+ \(model "x"\)/);
  });
});
