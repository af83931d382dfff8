import fs from 'node:fs';
import { assertDocumentedEvent, assertDocumentedResponse, documentedOperation, openApiCounters } from './openapi-responses.ts';
import { assertMatchesSpec } from './openapi-validator.ts';

/**
 * Every HTTP response a Deepshi server under test gives the suite is checked against the document GET /openapi.json
 * serves: path, method, status, content type, and the body (JSON parsed; each SSE event against the stream's documented
 * event schema, as it arrives). Importing this module replaces globalThis.fetch, once per process, with a fetch that
 * does it for the origins registered with registerDeepshiServer (startTestServer registers its own; tests that spawn
 * a server process register its URL). Other origins — the upstream simulators, webhook receivers — pass through
 * untouched. The openai SDK takes globalThis.fetch when a client is constructed, so every client is covered too.
 * Browser tests check the page's responses with checkCompleteResponse (test/helpers/browser.ts).
 *
 * Not checked against the document, on purpose (the allowlist):
 * - CORS preflights (OPTIONS): answered by @fastify/cors for any path, headers only (test/http/cors.test.ts).
 * - The dashboard's pages and static files (a GET outside /v1, /admin and /dashboard/api that is not documented and
 *   not JSON): the browser app, not the API (test/http/dashboard-static.test.ts checks them and their headers).
 * - A path or method the server does not have (or does not mount in this configuration): its 404/405 is checked as
 *   the OpenAI error envelope, as no operation describes it.
 * A violation throws from fetch (or errors the SSE stream before the bad event reaches the reader), and is also
 * remembered: a test that swallows the error still fails its file at exit, as does a file that registered a server
 * and had no response checked at all — so this cannot silently turn off.
 */

const API_PREFIX = /^\/(v1|admin|dashboard\/api)(\/|$)/;
const origins = new Map<string, { probe: boolean }>();
const violations: string[] = [];
let registered = 0;
export const documentedCounts = {
  get responses() {
    return openApiCounters.validated;
  },
  get events() {
    return openApiCounters.events;
  },
  excluded: 0,
};

/**
 * Marks `url`'s origin as a Deepshi server under test; returns the function that unmarks it (call it when the server
 * closes: its port may later serve a simulator). `probe` is for the test of this checker itself: its violations are
 * expected and do not fail the file.
 */
export function registerDeepshiServer(url: string, options: { probe?: boolean } = {}): () => void {
  const origin = new URL(url).origin;
  origins.set(origin, { probe: options.probe ?? false });
  if (!options.probe) registered++;
  return () => {
    origins.delete(origin);
  };
}

export function isDeepshiServer(url: string): boolean {
  return origins.has(new URL(url).origin);
}

type Verdict = 'documented' | 'excluded' | 'unknown-route';

function classify(method: string, url: string, status: number, contentType: string): Verdict {
  const pathname = new URL(url).pathname;
  if (method === 'OPTIONS') return 'excluded';
  if (documentedOperation(method, url)) return 'documented';
  if (isNoRouteStatus(status, contentType)) return 'unknown-route';
  const page = !API_PREFIX.test(pathname) && !/^application\/(.+\+)?json/.test(contentType);
  if ((method === 'GET' || method === 'HEAD') && page) return 'excluded';
  return 'documented'; // assertDocumentedResponse says what is missing
}

const isNoRouteStatus = (status: number, contentType: string) =>
  (status === 404 || status === 405) && contentType.startsWith('application/json');

/**
 * The server's answer for a route it does not have (src/http/error-handler.ts): a documented path can be one too, when
 * the server runs without it (/admin/v1 without DEEPSHI_ADMIN_TOKEN, /metrics without DEEPSHI_METRICS_TOKEN).
 */
function isNoRouteAnswer(status: number, contentType: string, bytes: Uint8Array): boolean {
  if (!isNoRouteStatus(status, contentType)) return false;
  try {
    const code = JSON.parse(new TextDecoder().decode(bytes))?.error?.code;
    return code === 'unknown_url' || code === 'method_not_allowed';
  } catch {
    return false;
  }
}

function check(url: string, run: () => void): void {
  try {
    run();
  } catch (error) {
    if (!origins.get(new URL(url).origin)?.probe) violations.push((error as Error).message);
    throw error;
  }
}

/** Checks a response whose whole body is here (as bytes). Used for every non-SSE response, and by the browser tests. */
export function checkCompleteResponse(method: string, url: string, status: number, contentType: string | null, bytes: Uint8Array): void {
  const type = contentType ?? '';
  const verdict = isNoRouteAnswer(status, type, bytes) ? 'unknown-route' : classify(method, url, status, type);
  if (verdict === 'excluded') {
    documentedCounts.excluded++;
    return;
  }
  check(url, () => {
    const text = () => new TextDecoder().decode(bytes);
    if (verdict === 'unknown-route') {
      assertMatchesSpec('Error', JSON.parse(text()), `${method} ${new URL(url).pathname} → ${status}`);
      openApiCounters.validated++;
      return;
    }
    if (type.startsWith('text/event-stream')) {
      checkSseHead(method, url, status, type);
      for (const frame of text().split('\n\n')) checkFrame(method, url, status, frame);
      return;
    }
    let body: unknown = bytes.length === 0 ? undefined : bytes;
    if (bytes.length > 0 && /^application\/(.+\+)?json/.test(type)) body = JSON.parse(text());
    else if (bytes.length > 0 && type.startsWith('text/')) body = text();
    assertDocumentedResponse(method, url, status, type, body);
    if (status >= 400 && body !== undefined && typeof body === 'object' && !(body instanceof Uint8Array))
      assertMatchesSpec('Error', body, `${method} ${new URL(url).pathname} → ${status}`);
  });
}

/** The head of an event stream: its (method, path, status, content type) must be documented as one. */
function checkSseHead(method: string, url: string, status: number, type: string): void {
  assertDocumentedResponse(method, url, status, type, new Uint8Array(1));
}

/** One SSE frame: comments (keepalives) carry nothing; a data frame is checked against the documented event schema. */
function checkFrame(method: string, url: string, status: number, frame: string): void {
  const lines = frame.split('\n');
  const data = lines
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(line.startsWith('data: ') ? 6 : 5))
    .join('\n');
  if (!data) return;
  const pathname = new URL(url).pathname;
  // OpenAI's end-of-stream marker for chat (documented in the chat operation's description), not JSON.
  if (data === '[DONE]' && pathname === '/v1/chat/completions') return;
  const event = JSON.parse(data);
  assertDocumentedEvent(method, url, status, event);
  if (/^\/v1\/images\/(generations|edits)$/.test(pathname)) {
    // The contract's ImageStreamEvent is open; an error event must still be the envelope the SDKs read, and the event
    // types are the ones the SDKs type: image_edit.* for edits, image_generation.* for generations.
    if (event.type === 'error') assertMatchesSpec('Error', { error: event.error }, `SSE ${pathname}`);
    else {
      const prefix = pathname.endsWith('/edits') ? 'image_edit.' : 'image_generation.';
      if (!String(event.type).startsWith(prefix)) throw new Error(`SSE ${pathname}: event type ${event.type} should start with ${prefix}`);
    }
  }
}

/**
 * The response with its event stream checked frame by frame as the reader pulls it. A bad frame errors the stream
 * before the reader gets it and cancels the body explicitly, so the connection is not left half-read.
 */
function checkedEventStream(method: string, url: string, response: Response): Response {
  let pending = '';
  const decoder = new TextDecoder();
  const source = response.body!.getReader();
  const checked = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await source.read();
      if (done) {
        controller.close();
        return;
      }
      pending += decoder.decode(value, { stream: true });
      const frames = pending.split(/\r?\n\r?\n/);
      pending = frames.pop() ?? '';
      try {
        for (const frame of frames) check(url, () => checkFrame(method, url, response.status, frame));
      } catch (error) {
        controller.error(error);
        await source.cancel(error).catch(() => {});
        return;
      }
      controller.enqueue(value);
    },
    cancel: (reason) => source.cancel(reason),
  });
  const answer = new Response(checked, { status: response.status, statusText: response.statusText, headers: response.headers });
  Object.defineProperty(answer, 'url', { value: response.url });
  return answer;
}

/**
 * Every Deepshi response carries its request id (req_ and 32 hex digits, src/http/app.ts); the simulators send none. A
 * response with one from an origin nobody registered is a server under test that escaped the check: a mismatch.
 */
function noteUnregisteredDeepshi(url: string, response: Response): void {
  if (/^req_[0-9a-f]{32}$/.test(response.headers.get('x-request-id') ?? ''))
    violations.push(
      `${new URL(url).origin} answers as a Deepshi server but is not registered (registerDeepshiServer): its responses went unchecked`,
    );
}

const originalFetch = globalThis.fetch;

async function documentedFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const response = await originalFetch(input, init);
  const url = input instanceof Request ? input.url : String(input);
  if (!isDeepshiServer(url)) {
    noteUnregisteredDeepshi(url, response);
    return response;
  }
  const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
  const type = response.headers.get('content-type') ?? '';
  if (type.startsWith('text/event-stream') && classify(method, url, response.status, type) === 'documented' && response.body) {
    check(url, () => checkSseHead(method, url, response.status, type));
    return checkedEventStream(method, url, response);
  }
  const bytes = method === 'HEAD' ? new Uint8Array() : new Uint8Array(await response.clone().arrayBuffer());
  checkCompleteResponse(method, url, response.status, response.headers.get('content-type'), bytes);
  return response;
}

const INSTALLED = Symbol.for('deepshi.documentedFetch');
if (!(globalThis as Record<symbol, unknown>)[INSTALLED]) {
  (globalThis as Record<symbol, unknown>)[INSTALLED] = true;
  globalThis.fetch = documentedFetch as typeof fetch;
  process.on('exit', () => {
    const problems = [...violations];
    if (registered > 0 && openApiCounters.validated === 0)
      problems.push('a Deepshi server was under test but no response was checked against /openapi.json');
    if (process.env.DEEPSHI_TEST_OPENAPI_REPORT)
      fs.appendFileSync(
        process.env.DEEPSHI_TEST_OPENAPI_REPORT,
        `${JSON.stringify({ file: process.argv[1], responses: openApiCounters.validated, events: openApiCounters.events, excluded: documentedCounts.excluded, violations: problems.length })}\n`,
      );
    if (problems.length > 0) {
      process.stderr.write(`Responses that do not match /openapi.json:\n${problems.map((problem) => `- ${problem}`).join('\n')}\n`);
      process.exitCode = 1;
    }
  });
}

/** Whether the fetch this process uses is the checking one (test/http/openapi-coverage.test.ts asserts it). */
export function documentedFetchInstalled(): boolean {
  return globalThis.fetch === (documentedFetch as typeof fetch);
}
