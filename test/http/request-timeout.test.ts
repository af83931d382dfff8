import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { toFile } from 'openai';
import { renderSketch } from '../../src/images/sketch.ts';
import { expectBalance } from '../helpers/assertions.ts';
import { assertMatchesSpec } from '../helpers/openapi-validator.ts';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/** DEEPSHI_REQUEST_TIMEOUT_MS bounds receiving a request (headers and body), never answering it. */
const LIMIT_MS = 1000;
/** Generous: the limit, Node's check interval and a loaded CI machine. */
const CUT_OFF_WITHIN_MS = 10_000;

interface Exchange {
  /** Everything the server sent, as latin1 text. */
  received: string;
  /** From the first byte sent to the connection closing. */
  elapsedMs: number;
}

/**
 * A raw client that sends `head` at once, then `rest` one byte every `everyMs`, until the server closes the
 * connection. Fails if the server has not closed it within CUT_OFF_WITHIN_MS.
 */
function trickle(url: string, head: Buffer | string, rest: Buffer | string, everyMs = 100): Promise<Exchange> {
  const { hostname, port } = new URL(url);
  const bytes = Buffer.from(rest);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const chunks: Buffer[] = [];
    const socket = net.connect({ host: hostname, port: Number(port) });
    let sent = 0;
    let dripping: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server still had the connection open after ${CUT_OFF_WITHIN_MS} ms`));
    }, CUT_OFF_WITHIN_MS);
    socket.on('connect', () => {
      socket.write(head);
      dripping = setInterval(() => {
        if (sent < bytes.length && socket.writable) socket.write(bytes.subarray(sent, ++sent));
      }, everyMs);
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {}); // writes racing the server's close: EPIPE / ECONNRESET
    socket.on('close', () => {
      clearInterval(dripping);
      clearTimeout(deadline);
      if (sent >= bytes.length) reject(new Error('the whole request went out: the test did not trickle slowly enough'));
      else resolve({ received: Buffer.concat(chunks).toString('latin1'), elapsedMs: Date.now() - started });
    });
  });
}

/** The first HTTP response in `text`: status, lower-cased headers, body. */
function parseResponse(text: string): { status: number; headers: Record<string, string>; body: string } {
  const end = text.indexOf('\r\n\r\n');
  assert.ok(end > 0, `not an HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length']);
  return { status: Number(statusLine.split(' ')[1]), headers, body: text.slice(end + 4, end + 4 + length) };
}

/** A multipart edit request for `scripted-image` with one PNG: its headers (declaring the full length) and body. */
async function editRequest(key: string): Promise<{ head: string; body: Buffer }> {
  const boundary = '----deepshi-request-timeout';
  const image = await renderSketch({ prompt: 'reference', seed: 1, width: 64, height: 64, format: 'png' });
  const field = (name: string, value: string) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const body = Buffer.concat([
    Buffer.from(field('model', 'scripted-image') + field('prompt', 'make it night')),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="ref.png"\r\nContent-Type: image/png\r\n\r\n`),
    image,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const head =
    'POST /v1/images/edits HTTP/1.1\r\nHost: localhost\r\n' +
    `Authorization: Bearer ${key}\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${body.length}\r\n\r\n`;
  return { head, body };
}

/** The 408 the server writes when a request is not received in time: the OpenAI envelope, and the connection closed. */
function assertRequestTimeout(exchange: Exchange): void {
  const response = parseResponse(exchange.received);
  assert.equal(response.status, 408, exchange.received);
  assert.match(response.headers['content-type'], /^application\/json/);
  assert.equal(response.headers.connection, 'close');
  assert.match(response.headers['x-request-id'], /^req_[0-9a-f]{32}$/);
  assert.equal(response.headers['x-should-retry'], undefined, '408 is retryable');
  const body = JSON.parse(response.body);
  assertMatchesSpec('Error', body, '408 request timeout');
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(body.error.type, 'invalid_request_error');
  assert.equal(body.error.code, 'request_timeout');
  assert.equal(body.error.param, null);
  assert.match(body.error.message, /not received in time \(this server allows 1 second to receive a whole request/);
  assert.ok(exchange.elapsedMs >= LIMIT_MS - 50, `cut off after ${exchange.elapsedMs} ms, before the limit`);
}

describe('DEEPSHI_REQUEST_TIMEOUT_MS: the time to receive a request', () => {
  let t: TestServer;
  let account: { accountId: string; key: string };
  const upstream = new ScriptedAdapter();

  before(async () => {
    t = await startTestServer({ catalog: testCatalogJson(), adapters: [upstream], env: { DEEPSHI_REQUEST_TIMEOUT_MS: String(LIMIT_MS) } });
    account = await t.createAccount('1');
  });
  after(() => t.close());
  beforeEach(() => {
    upstream.behaviour = {};
    upstream.calls = 0;
  });

  it('cuts off an edit whose multipart body trickles in: 408 envelope, connection closed, nothing held or charged', async () => {
    const { head, body } = await editRequest(account.key);
    // The form fields and the file's part header arrive at once; the image then comes in at 10 bytes a second.
    const split = body.indexOf('\r\n\r\n', body.indexOf('filename=')) + 4;
    const exchange = await trickle(t.url, Buffer.concat([Buffer.from(head), body.subarray(0, split)]), body.subarray(split));
    assertRequestTimeout(exchange);
    assert.equal(upstream.calls, 0);
    await expectBalance(t, account, '1');
    // The server is fine afterwards.
    const health = await fetch(`${t.url}/healthz`);
    assert.equal(health.status, 200);
  });

  it('cuts off a generation whose JSON body trickles in', async () => {
    // Long enough that, at 10 bytes a second, it could not arrive before the test gives up.
    const json = JSON.stringify({ model: 'scripted-image', prompt: 'a lighthouse at dusk, '.repeat(20) });
    const head =
      'POST /v1/images/generations HTTP/1.1\r\nHost: localhost\r\n' +
      `Authorization: Bearer ${account.key}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n\r\n`;
    assertRequestTimeout(await trickle(t.url, head, json));
    assert.equal(upstream.calls, 0);
    await expectBalance(t, account, '1');
  });

  it('cuts off a client that trickles its headers (a fresh request id: routing never saw the request)', async () => {
    assertRequestTimeout(await trickle(t.url, 'POST /v1/images/generations HTTP/1.1\r\nHost: localhost\r\n', 'X-Slow: '.padEnd(200, 'a')));
  });

  it('an upload already answered (401 before its body) is closed without a second response', async () => {
    const { head, body } = await editRequest('sk-bf-not-a-valid-key');
    const exchange = await trickle(t.url, head, body);
    assert.equal(parseResponse(exchange.received).status, 401);
    assert.equal(exchange.received.split('HTTP/1.1 ').length - 1, 1, exchange.received);
  });

  it('does not bound answering: a generation whose upstream takes longer than the limit succeeds', async () => {
    upstream.behaviour = { delayMs: LIMIT_MS * 2 };
    const started = Date.now();
    const result = await t.client(account.key).images.generate({ model: 'scripted-image', prompt: 'a slow lighthouse' });
    assert.ok(Date.now() - started >= LIMIT_MS * 2, 'the upstream delay was not applied');
    assert.equal(result.data!.length, 1);
    assert.ok(result.data![0].b64_json);
    assert.equal(upstream.calls, 1);
    await expectBalance(t, account, '0.99');
  });

  it('does not bound answering an edit either (its body arrived in time)', async () => {
    upstream.behaviour = { delayMs: LIMIT_MS * 2 };
    const image = await renderSketch({ prompt: 'reference', seed: 1, width: 64, height: 64, format: 'png' });
    const result = await t
      .client(account.key)
      .images.edit({ model: 'scripted-image', prompt: 'make it night', image: await toFile(image, 'ref.png', { type: 'image/png' }) });
    assert.equal(result.data!.length, 1);
    assert.equal(upstream.calls, 1);
  });
});
