import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config/config.ts';
import { urlForLog } from '../../src/http/app.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { registerDeepshiServer } from '../helpers/documented-http.ts';

const ADMIN_TOKEN = 'logging-admin-token-0123456789abcdef';

/**
 * What the request logs say: the path and query parameter names, never query values, never a header. Checked on the
 * real pino output (every line the server writes at debug level) while callers put keys and tokens where they should not.
 */
describe('request logs', () => {
  let server: RunningServer;
  let output = '';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-logging-'));

  before(async () => {
    const sink = new Writable({
      write: (chunk, _encoding, done) => {
        output += String(chunk);
        done();
      },
    });
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: `sqlite:${path.join(dir, 'deepshi.db')}`,
      DEEPSHI_ADMIN_TOKEN: ADMIN_TOKEN,
      DEEPSHI_DEV_ACCOUNT: 'false',
    });
    server = await startServer(config, { logger: pino({ level: 'debug' }, sink) });
    registerDeepshiServer(server.url);
  });
  after(async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('never log a query value, a key in the path, or the Authorization header', async () => {
    const account = await (
      await fetch(`${server.url}/admin/v1/accounts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'logs', credits: '1' }),
      })
    ).json();
    const { key } = await (
      await fetch(`${server.url}/admin/v1/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ account_id: account.id, name: 'k' }),
      })
    ).json();
    assert.match(key, /^sk-/);
    await fetch(`${server.url}/v1/models?api_key=${key}&limit=5`, { headers: { authorization: `Bearer ${key}` } });
    await fetch(`${server.url}/v1/models?token=${ADMIN_TOKEN}`);
    await fetch(`${server.url}/admin/v1/accounts?token=${ADMIN_TOKEN}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    await fetch(`${server.url}/v1/${key}`, { headers: { authorization: `Bearer ${key}` } });
    await fetch(`${server.url}/v1/images/generations?key=${key}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: '{"model":"deepshi-sketch","prompt":"p","n":0}',
    });

    assert.ok(output.includes('/v1/models?api_key=[redacted]&limit=[redacted]'), 'the request is logged, without values');
    assert.ok(output.includes('/v1/[redacted]'), 'a key-looking path part is redacted');
    for (const secret of [key, key.slice(6), ADMIN_TOKEN]) {
      assert.equal(output.includes(secret), false, `${secret.slice(0, 8)}… appears in the log`);
    }
    assert.equal(
      /authorization/i.test(output) && !/"authorization":"\[redacted\]"/i.test(output),
      false,
      'no Authorization header in clear',
    );
  });

  it('urlForLog keeps the path and parameter names only', () => {
    assert.equal(urlForLog('/v1/models'), '/v1/models');
    assert.equal(urlForLog('/v1/models?api_key=sk-bf-abc&x=1&flag'), '/v1/models?api_key=[redacted]&x=[redacted]&flag=[redacted]');
    assert.equal(urlForLog('/x?<script>=1'), '/x?[name]=[redacted]');
    assert.equal(urlForLog('/v1/sk-bf-0123456789abcdef/x?'), '/v1/[redacted]/x?');
  });
});
