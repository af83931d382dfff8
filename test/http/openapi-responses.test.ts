/**
 * Every response in the suite is checked against the served /openapi.json (test/helpers/documented-http.ts): the
 * check is on in every test process that starts a server, covers plain fetch, the openai SDK and SSE event by event,
 * catches each kind of mismatch, leaves other origins (simulators) alone, and fails a test file that swallowed a
 * mismatch or checked nothing at all — so it cannot silently turn off.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { documentedCounts, documentedFetchInstalled, registerDeepshiServer } from '../helpers/documented-http.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

type Answer = { status: number; type: string; body: string };

/** A server that answers whatever the test scripts, per method and path; stands in for a Deepshi server gone wrong. */
async function scriptedServer(): Promise<{ url: string; answers: Map<string, Answer>; close(): Promise<void> }> {
  const answers = new Map<string, Answer>();
  const server = http.createServer((request, response) => {
    const answer = answers.get(`${request.method} ${request.url}`) ?? { status: 599, type: 'text/plain', body: 'unscripted' };
    response.writeHead(answer.status, { 'content-type': answer.type });
    response.end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    answers,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const json = (status: number, body: unknown): Answer => ({ status, type: 'application/json; charset=utf-8', body: JSON.stringify(body) });
const chunk = { id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'deepshi-echo', choices: [] };

describe('the suite checks every response of a server under test against /openapi.json', () => {
  let t: TestServer;
  let key: string;
  before(async () => {
    t = await startTestServer();
    key = (await t.createAccount('5')).key;
  });
  after(() => t.close());

  it('is installed as the global fetch, so plain fetch calls and openai SDK clients built without a fetch are checked', async () => {
    assert.equal(documentedFetchInstalled(), true);
    const before = documentedCounts.responses;
    assert.equal((await fetch(`${t.url}/healthz`)).status, 200);
    assert.equal(documentedCounts.responses, before + 1);
    await t.client(key).models.list();
    assert.equal(documentedCounts.responses, before + 2);
  });

  it('checks each SSE event of a chat and of an image stream against its documented event schema', async () => {
    const before = documentedCounts.events;
    const chat = await t
      .client(key)
      .chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'hi' }], stream: true });
    for await (const _ of chat);
    const afterChat = documentedCounts.events;
    assert.ok(afterChat - before >= 2, `chat events checked: ${afterChat - before}`);
    const image = await t.client(key).images.generate({ model: 'deepshi-sketch', prompt: 'a cat', stream: true });
    for await (const _ of image);
    assert.ok(documentedCounts.events > afterChat, 'the image stream events were checked');
  });

  describe('a server that answers off the document', () => {
    let fake: Awaited<ReturnType<typeof scriptedServer>>;
    let unregister: () => void;
    before(async () => {
      fake = await scriptedServer();
      unregister = registerDeepshiServer(fake.url, { probe: true });
    });
    after(async () => {
      unregister();
      await fake.close();
    });

    const fails = async (method: string, route: string, answer: Answer, message: RegExp) => {
      fake.answers.set(`${method} ${route}`, answer);
      await assert.rejects(fetch(`${fake.url}${route}`, { method }), message);
    };

    it('a body that does not match its schema', () =>
      fails('GET', '/v1/models', json(200, { object: 'list', data: 'none' }), /GET \/v1\/models → 200: body does not match/));
    it('a path the document does not have', () => fails('GET', '/v1/secret', json(200, {}), /path not in \/openapi.json/));
    it('a method the document does not have on a path', () =>
      fails('DELETE', '/v1/account', json(200, {}), /method not in \/openapi.json/));
    it('a status the operation does not document', () => fails('GET', '/v1/models', json(418, { error: {} }), /status not documented/));
    it('a content type the response does not document', () =>
      fails('GET', '/v1/models', { status: 200, type: 'text/html', body: '<p>' }, /content type "text\/html" not documented/));
    it('a documented error status whose body is not the OpenAI error envelope', () =>
      fails('GET', '/v1/models', json(401, { message: 'no' }), /does not match/));
    it('an unknown route whose 404 is not the error envelope', () =>
      fails('GET', '/v1/nothing/here', json(404, { nope: true }), /does not match Error/));

    it('an SSE event that does not match: the stream errors before the reader gets it', async () => {
      const frames = `data: ${JSON.stringify(chunk)}\n\ndata: ${JSON.stringify({ id: 'c1', object: 'wrong' })}\n\ndata: [DONE]\n\n`;
      fake.answers.set('POST /v1/chat/completions', { status: 200, type: 'text/event-stream', body: frames });
      const response = await fetch(`${fake.url}/v1/chat/completions`, { method: 'POST' });
      await assert.rejects(response.text(), /SSE event does not match/);
    });

    it('leaves the dashboard page files alone (the allowlist) but still checks JSON outside the API prefixes', async () => {
      fake.answers.set('GET /assets/app.js', { status: 200, type: 'text/javascript', body: 'export {}' });
      const excluded = documentedCounts.excluded;
      assert.equal((await fetch(`${fake.url}/assets/app.js`)).status, 200);
      assert.equal(documentedCounts.excluded, excluded + 1);
      await fails('GET', '/assets/data.json', json(200, {}), /path not in \/openapi.json/);
    });

    it('checks nothing once unregistered (an upstream simulator on another origin is never checked)', async () => {
      const other = await scriptedServer();
      try {
        other.answers.set('GET /v1/models', json(200, { object: 'list', data: 'none' }));
        assert.equal((await fetch(`${other.url}/v1/models`)).status, 200);
      } finally {
        await other.close();
      }
    });
  });

  describe('a test file fails at exit', () => {
    const helper = path.resolve(import.meta.dirname, '../helpers/documented-http.ts');
    const run = (body: string) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-documented-'));
      const file = path.join(dir, 'script.mts');
      // The bare import too: an import whose names go unused is dropped by the TypeScript transform.
      fs.writeFileSync(
        file,
        `import ${JSON.stringify(helper)};\nimport { registerDeepshiServer } from ${JSON.stringify(helper)};\n${body}\n`,
      );
      try {
        return spawnSync(process.execPath, ['--import', 'tsx', file], {
          encoding: 'utf8',
          env: { ...process.env, DEEPSHI_TEST_OPENAPI_REPORT: '' },
        });
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    };

    it('when it registered a server and no response was checked', () => {
      const result = run(`registerDeepshiServer('http://127.0.0.1:9');`);
      assert.equal(result.status, 1, result.stderr);
      assert.match(result.stderr, /no response was checked against \/openapi.json/);
    });

    it('when a mismatch was thrown and swallowed by the test', () => {
      const result = run(`
        import http from 'node:http';
        const server = http.createServer((_, response) => { response.writeHead(200, { 'content-type': 'application/json' }); response.end('{}'); });
        await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
        const url = 'http://127.0.0.1:' + server.address().port;
        registerDeepshiServer(url);
        await fetch(url + '/v1/models').catch(() => {});
        server.close();`);
      assert.equal(result.status, 1, result.stderr);
      assert.match(result.stderr, /GET \/v1\/models → 200: body does not match/);
    });

    it('when a server answered as Deepshi (its request id) from an origin nobody registered', () => {
      const result = run(`
        import http from 'node:http';
        const id = 'req_' + '0'.repeat(32);
        const server = http.createServer((_, response) => { response.writeHead(200, { 'content-type': 'application/json', 'x-request-id': id }); response.end('{}'); });
        await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
        await fetch('http://127.0.0.1:' + server.address().port + '/healthz');
        server.close();`);
      assert.equal(result.status, 1, result.stderr);
      assert.match(result.stderr, /answers as a Deepshi server but is not registered/);
    });

    it('not when every checked response matched', () => {
      const result = run(`
        import http from 'node:http';
        const server = http.createServer((_, response) => { response.writeHead(200, { 'content-type': 'application/json' }); response.end('{"status":"ok"}'); });
        await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
        const url = 'http://127.0.0.1:' + server.address().port;
        registerDeepshiServer(url);
        if ((await fetch(url + '/healthz')).status !== 200) process.exit(3);
        server.close();`);
      assert.equal(result.status, 0, result.stderr);
    });
  });
});
