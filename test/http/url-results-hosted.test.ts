/**
 * DEEPSHI_URL_RESULTS=hosted (src/services/jobs/hosted-answers.ts): a synchronous `response_format: "url"` answer —
 * generations and edits, JSON and the completed SSE events — names its images by signed, expiring links to hosted files
 * owned by the caller's account, served without a key, kept as long as job results and then swept. Without the
 * setting, `url` stays the contract's `data:` URI.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { toFile } from 'openai';
import { loadConfig } from '../../src/config/config.ts';
import { renderSketch } from '../../src/images/sketch.ts';
import { assertDocumentedResponse } from '../helpers/openapi-responses.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
const HOSTED_LINK = /^http:\/\/127\.0\.0\.1:\d+\/v1\/files\/(file_\w+)\/content\?expires=(\d+)&signature=([\w-]+)$/;

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Fetches a link as an `<img>` tag or a webhook receiver would: no key. */
async function fetchWithoutKey(url: string): Promise<{ status: number; type: string | null; bytes: Buffer }> {
  const response = await fetch(url);
  return { status: response.status, type: response.headers.get('content-type'), bytes: Buffer.from(await response.arrayBuffer()) };
}

describe('DEEPSHI_URL_RESULTS=hosted', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ env: { DEEPSHI_URL_RESULTS: 'hosted' } });
  });
  after(() => t.close());

  it('a generation with response_format url gets a hosted link that serves the PNG without a key; the file is the caller’s', async () => {
    const account = await t.createAccount('1');
    const answer = await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'a lighthouse', response_format: 'url' });
    assert.equal(answer.data!.length, 1);
    const url = answer.data![0].url!;
    const [, fileId, expires, signature] = HOSTED_LINK.exec(url) ?? assert.fail(`not a hosted link: ${url.slice(0, 60)}`);
    assert.equal(answer.data![0].b64_json, undefined);
    assert.ok(answer.usage && (answer.usage as any).cost.total_cost > 0, 'billed as any synchronous call');

    const served = await fetchWithoutKey(url);
    assert.equal(served.status, 200);
    assert.equal(served.type, 'image/png');
    assert.deepEqual(served.bytes.subarray(0, 4), PNG_SIGNATURE);

    const file = (await t.server.store.getFile(fileId))!;
    assert.equal(file.accountId, account.accountId, "owned by the caller's account");
    assert.equal(file.jobId, null);
    assert.equal(file.bytes, served.bytes.length);
    assert.equal(Number(expires), Math.floor(file.expiresAt / 1000), 'the link lasts as long as the file (DEEPSHI_RESULT_TTL_HOURS)');
    const link = new URL(url);
    const owner = await fetch(`${t.url}${link.pathname}`, { headers: { authorization: `Bearer ${account.key}` } });
    assert.equal(owner.status, 200, "the owner's key reads it without a signature");
    const stranger = await t.createAccount('1');
    assert.equal((await fetch(`${t.url}${link.pathname}`, { headers: { authorization: `Bearer ${stranger.key}` } })).status, 404);
    const tampered = `${t.url}${link.pathname}?expires=${Number(expires) + 60}&signature=${signature}`;
    assert.equal((await fetch(tampered)).status, 403);
  });

  it('the JSON answer is the one the served /openapi.json documents', async () => {
    const account = await t.createAccount('1');
    const response = await fetch(`${t.url}/v1/images/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'deepshi-sketch', prompt: 'two boats', n: 2, response_format: 'url' }),
    });
    const body = (await response.json()) as { data: Array<{ url: string; index: number }> };
    assertDocumentedResponse('POST', '/v1/images/generations', response.status, response.headers.get('content-type'), body);
    assert.equal(response.status, 200);
    assert.deepEqual(
      body.data.map((image) => image.index),
      [0, 1],
    );
    const files = new Set(body.data.map((image) => HOSTED_LINK.exec(image.url)?.[1]));
    assert.equal(files.size, 2, 'one hosted file per image');
    for (const image of body.data) {
      const served = await fetchWithoutKey(image.url);
      assert.equal(served.status, 200);
      assertDocumentedResponse('GET', new URL(image.url).pathname, served.status, served.type, served.bytes.toString('latin1'));
    }
  });

  it('an Idempotency-Key replay returns the same links, charged once', async () => {
    const account = await t.createAccount('1');
    const send = () =>
      fetch(`${t.url}/v1/images/generations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json', 'idempotency-key': 'hosted-once' },
        body: JSON.stringify({ model: 'deepshi-sketch', prompt: 'once', response_format: 'url' }),
      });
    const first = await send();
    const second = await send();
    assert.equal(second.headers.get('idempotent-replayed'), 'true');
    const [a, b] = [(await first.json()) as any, (await second.json()) as any];
    assert.match(a.data[0].url, HOSTED_LINK);
    assert.equal(b.data[0].url, a.data[0].url);
    assert.equal((await t.server.store.listRequests(account.accountId, 10)).length, 1);
  });

  it('an edit with response_format url gets a hosted link too', async () => {
    const account = await t.createAccount('1');
    const input = await renderSketch({ prompt: 'input', seed: 3, width: 64, height: 64, format: 'png' });
    const answer = await t.client(account.key).images.edit({
      model: 'deepshi-sketch',
      prompt: 'add a hat',
      image: await toFile(input, 'in.png', { type: 'image/png' }),
      response_format: 'url',
    });
    const url = answer.data![0].url!;
    assert.match(url, HOSTED_LINK);
    const served = await fetchWithoutKey(url);
    assert.equal(served.status, 200);
    assert.deepEqual(served.bytes.subarray(0, 4), PNG_SIGNATURE);
  });

  it('a stream: each completed event also carries the hosted link to the image in its b64_json', async () => {
    const account = await t.createAccount('1');
    const stream = await t.client(account.key).images.generate({
      model: 'deepshi-sketch',
      prompt: 'a comet',
      response_format: 'url',
      stream: true,
      n: 2,
    });
    const completed: any[] = [];
    for await (const event of stream) if (event.type === 'image_generation.completed') completed.push(event);
    assert.equal(completed.length, 2);
    for (const event of completed) {
      assert.match(event.url, HOSTED_LINK);
      const served = await fetchWithoutKey(event.url);
      assert.equal(served.status, 200);
      assert.deepEqual(served.bytes, Buffer.from(event.b64_json, 'base64'), 'the link serves the streamed image');
    }
  });

  it('b64_json answers are unchanged: inline, nothing hosted', async () => {
    const account = await t.createAccount('1');
    const answer = await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'inline', response_format: 'b64_json' });
    assert.equal(answer.data![0].url, undefined);
    assert.deepEqual(Buffer.from(answer.data![0].b64_json!, 'base64').subarray(0, 4), PNG_SIGNATURE);
  });
});

describe('DEEPSHI_URL_RESULTS=hosted: links expire with the result TTL', () => {
  let t: TestServer;
  before(async () => {
    // 0.0004 h = 1.44 s of retention; the sweeper runs every 100 ms.
    t = await startTestServer({
      env: { DEEPSHI_URL_RESULTS: 'hosted', DEEPSHI_RESULT_TTL_HOURS: '0.0004', DEEPSHI_SWEEP_INTERVAL_MS: '100' },
    });
  });
  after(() => t.close());

  it('the sweeper deletes the file; its link is then refused and the owner gets a 404', async () => {
    const account = await t.createAccount('1');
    const answer = await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'brief', response_format: 'url' });
    const url = answer.data![0].url!;
    const fileId = HOSTED_LINK.exec(url)![1];
    await waitFor('the sweeper to delete the file', async () => (await t.server.store.getFile(fileId))?.deletedAt !== null);
    assert.equal((await fetch(url)).status, 403, 'the link has expired');
    const owner = await fetch(`${t.url}${new URL(url).pathname}`, { headers: { authorization: `Bearer ${account.key}` } });
    assert.equal(owner.status, 404);
  });
});

describe('DEEPSHI_URL_RESULTS unset (the default)', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  it('response_format url answers the contract’s data: URI', async () => {
    const account = await t.createAccount('1');
    const answer = await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'inline url', response_format: 'url' });
    const url = answer.data![0].url!;
    assert.match(url, /^data:image\/png;base64,/);
    assert.deepEqual(Buffer.from(url.slice(url.indexOf(',') + 1), 'base64').subarray(0, 4), PNG_SIGNATURE);
  });

  it('hosted with PostgreSQL and no DEEPSHI_SERVER_SECRET stops start-up with what to set', () => {
    assert.throws(
      () => loadConfig({ DATABASE_URL: 'postgres://localhost/deepshi', DEEPSHI_URL_RESULTS: 'hosted' }),
      /DEEPSHI_URL_RESULTS=hosted needs DEEPSHI_SERVER_SECRET/,
    );
  });
});
