/**
 * A request that reaches a closing server (src/http/closing.ts): one that arrives on a keep-alive connection the
 * client opened before shutdown began is refused with 503 `server_shutting_down` as the OpenAI error envelope, with
 * CORS headers on /v1 like every other answer, `Retry-After` and `Connection: close` — not Fastify's own 503 body.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { ImageCallContext, NormalizedImageRequest } from '../../src/providers/types.ts';
import { checkCompleteResponse } from '../helpers/documented-http.ts';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

const APP = 'https://app.example.com';

/** An upstream that holds each generation until the test opens the gate. */
class GatedAdapter extends ScriptedAdapter {
  started = 0;
  open!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.open = resolve));

  override async generate(request: NormalizedImageRequest, route: unknown, context: ImageCallContext) {
    this.started++;
    await this.gate;
    return super.generate(request, route, context);
  }
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The client's port of the connection it came on. */
  localPort: number | undefined;
}

describe('a request arriving while the server closes', () => {
  const upstream = new GatedAdapter();
  let t: TestServer;
  before(async () => {
    // A grace period no test run reaches: shutdown waits for the held generation, however slow the machine.
    t = await startTestServer({ catalog: testCatalogJson(), adapters: [upstream], env: { DEEPSHI_SHUTDOWN_GRACE_MS: '600000' } });
  });
  after(() => t.close());

  it('on a keep-alive connection opened before: 503 server_shutting_down envelope with CORS, Retry-After, Connection: close', async () => {
    const { key } = await t.createAccount('1');
    // One keep-alive connection for both requests: the second goes out on it once the first is answered.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const target = new URL(t.url);
    const send = (method: string, path: string, body?: string) => {
      const request = http.request({
        host: target.hostname,
        port: target.port,
        method,
        path,
        agent,
        headers: {
          authorization: `Bearer ${key}`,
          origin: APP,
          ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }),
        },
      });
      const answer = new Promise<Answer>((resolve, reject) => {
        request.on('error', reject);
        request.on('response', (response) => {
          const localPort = response.socket.localPort;
          let text = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => (text += chunk));
          response.on('end', () => {
            try {
              // Checked against /openapi.json like every fetch in the suite (this client is node:http, not fetch).
              checkCompleteResponse(
                method,
                `${t.url}${path}`,
                response.statusCode!,
                response.headers['content-type'] ?? null,
                Buffer.from(text),
              );
              resolve({ status: response.statusCode!, headers: response.headers, text, localPort });
            } catch (error) {
              reject(error);
            }
          });
        });
      });
      request.end(body);
      return answer;
    };

    try {
      // The first request keeps the connection busy: a generation the upstream holds.
      const first = send('POST', '/v1/images/generations', JSON.stringify({ model: 'scripted-image', prompt: 'a lighthouse' }));
      await waitFor(() => upstream.started === 1, 'the generation to reach the upstream');

      const closing = t.server.close();
      // Closing has begun once /healthz is refused: 503 on a pooled connection, or no connection at all (the listener
      // closes after the flag is set).
      await waitFor(
        () =>
          fetch(`${t.url}/healthz`).then(
            async (response) => {
              await response.arrayBuffer();
              return response.status === 503;
            },
            (error: Error & { cause?: { code?: string } }) => {
              if (['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET'].includes(error.cause?.code ?? '')) return true;
              throw error;
            },
          ),
        'the server to start closing',
      );

      // Queued on the agent: it goes out on the busy connection as soon as the generation is answered.
      const second = send('GET', '/v1/models');
      upstream.open();
      const answered = await first;
      assert.equal(answered.status, 200, 'a request received before closing is served');
      const refused = await second;
      assert.equal(refused.localPort, answered.localPort, 'the second request came on the same connection');

      assert.equal(refused.status, 503);
      assert.deepEqual(JSON.parse(refused.text), {
        error: {
          message: 'The server is shutting down and did not start this request; nothing was charged. Please retry.',
          type: 'api_error',
          code: 'server_shutting_down',
          param: null,
        },
      });
      assert.match(String(refused.headers['content-type']), /^application\/json/);
      assert.equal(refused.headers['access-control-allow-origin'], '*');
      assert.match(String(refused.headers['access-control-expose-headers']), /retry-after/);
      assert.equal(refused.headers['retry-after'], '1');
      assert.equal(refused.headers.connection, 'close');
      assert.match(String(refused.headers['x-request-id']), /^req_[0-9a-f]{32}$/);
      await closing;
    } finally {
      agent.destroy();
    }
  });
});

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
