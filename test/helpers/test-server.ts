import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import OpenAI from 'openai';
import pino from 'pino';
import { loadConfig } from '../../src/config/config.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import type { ImageAdapter } from '../../src/providers/types.ts';
import { assertMatchesSpec, specCounters } from './openapi-validator.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

export interface TestServer {
  server: RunningServer;
  url: string;
  /** An OpenAI SDK client for a key; every response it receives is checked against the spec. */
  client(key: string, options?: { maxRetries?: number; timeout?: number }): OpenAI;
  /** Calls the admin API; throws on non-2xx. */
  admin<T = Record<string, any>>(method: string, route: string, body?: unknown): Promise<T>;
  /** Creates an account with `credits` USD and a key for it. */
  createAccount(credits: string, keyOptions?: { models?: string[] | null }): Promise<{ accountId: string; keyId: string; key: string }>;
  balance(accountId: string): Promise<string>;
  /** The server's log lines so far, parsed (only with `captureLogs`). */
  logs(): Array<Record<string, any>>;
  close(): Promise<void>;
}

export interface TestServerOptions {
  env?: Record<string, string>;
  adapters?: ImageAdapter[];
  /** Catalog YAML/JSON text written to a temp file and used instead of the shipped catalog. */
  catalog?: string;
  /** Keep every log line (debug and up) in memory for logs(); otherwise the server logs nothing. */
  captureLogs?: boolean;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-test-'));
  let catalogPath: string | undefined;
  if (options.catalog) {
    catalogPath = path.join(dir, 'catalog.yaml');
    fs.writeFileSync(catalogPath, options.catalog);
  }
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: `sqlite:${path.join(dir, 'deepshi.db')}`,
    DEEPSHI_ADMIN_TOKEN: ADMIN_TOKEN,
    DEEPSHI_DEV_ACCOUNT: 'false',
    LOG_LEVEL: 'silent',
    ...(catalogPath ? { DEEPSHI_CATALOG: catalogPath } : {}),
    ...options.env,
  });
  let logText = '';
  const logger = options.captureLogs
    ? pino(
        { level: 'debug' },
        new Writable({
          write: (chunk, _encoding, done) => {
            logText += String(chunk);
            done();
          },
        }),
      )
    : pino({ level: 'silent' });
  const server = await startServer(config, { adapters: options.adapters, logger });
  const url = server.url;

  const admin = async (method: string, route: string, body?: unknown) => {
    const response = await fetch(`${url}${route}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const json = await response.json();
    if (!response.ok) throw new Error(`admin ${method} ${route} → ${response.status} ${JSON.stringify(json)}`);
    return json;
  };

  return {
    server,
    url,
    client: (key, clientOptions = {}) =>
      new OpenAI({
        apiKey: key,
        baseURL: `${url}/v1`,
        maxRetries: clientOptions.maxRetries ?? 0,
        timeout: clientOptions.timeout ?? 60_000,
        fetch: validatingFetch,
      }),
    admin,
    async createAccount(credits, keyOptions = {}) {
      const account = await admin('POST', '/admin/v1/accounts', { name: 'test', credits });
      const key = await admin('POST', '/admin/v1/keys', { account_id: account.id, name: 'test', models: keyOptions.models ?? null });
      return { accountId: account.id, keyId: key.id, key: key.key };
    },
    async balance(accountId) {
      return (await admin('GET', `/admin/v1/accounts/${accountId}`)).balance;
    },
    logs: () =>
      logText
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line)),
    async close() {
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The fetch the SDK clients use: every body the suite receives from the image endpoints (generations and edits)
 * is validated against the served /openapi.json (ImageResponse, ImageStreamEvent for each SSE event, ImageJob for a
 * 202 and the job routes, Error for every non-2xx).
 */
export async function validatingFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const response = await fetch(input, init);
  const url = String(input instanceof Request ? input.url : input);
  const type = response.headers.get('content-type') ?? '';
  if (!response.ok) {
    const body = await response.clone().json();
    assertMatchesSpec('Error', body, `${response.status} ${url}`);
    specCounters.validated++;
    return response;
  }
  const pathname = new URL(url).pathname;
  if (/\/images\/jobs(\/[^/]+(\/cancel)?)?$/.test(pathname) && type.startsWith('application/json')) {
    const body = await response.clone().json();
    for (const job of pathname.endsWith('/jobs') ? body.data : [body]) assertMatchesSpec('ImageJob', job, url);
    specCounters.validated++;
  } else if (response.status === 202 && /\/images\//.test(url)) {
    assertMatchesSpec('ImageJob', await response.clone().json(), url);
    specCounters.validated++;
  } else if (/\/images\//.test(url) && type.startsWith('application/json')) {
    assertMatchesSpec('ImageResponse', await response.clone().json(), url);
    specCounters.validated++;
  }
  if (/\/images\//.test(url) && type.startsWith('text/event-stream')) {
    // Tee the stream: one copy to the SDK, one to the validator, which checks each event as it arrives.
    const [forSdk, forCheck] = response.body!.tee();
    streamChecks.push(checkEvents(forCheck, url, init?.signal ?? undefined));
    return new Response(forSdk, { status: response.status, statusText: response.statusText, headers: response.headers });
  }
  return response;
}

const streamChecks: Promise<void>[] = [];

/** Waits for the validation of every SSE stream received so far; rejects on the first violation. */
export async function streamsValidated(): Promise<void> {
  await Promise.all(streamChecks.splice(0));
}

async function checkEvents(stream: ReadableStream<Uint8Array>, url: string, signal?: AbortSignal): Promise<void> {
  // Read until the end, or until the SDK aborts the request (it does after an error event): validate what arrived.
  // After an abort, Node 20's fetch may leave a tee branch neither closed nor errored, so reads then stop at the
  // first one that does not answer promptly.
  let text = '';
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  const abandoned = new Promise<never>((_, reject) => {
    const later = () => setTimeout(() => reject(new Error('aborted')), 200).unref();
    if (signal?.aborted) later();
    else signal?.addEventListener('abort', later, { once: true });
  });
  abandoned.catch(() => {});
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), abandoned]);
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    text = text.slice(0, text.lastIndexOf('\n\n') + 2);
  }
  for (const frame of text.split('\n\n')) {
    const data = frame
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => line.slice(6))
      .join('\n');
    if (!data) continue;
    const event = JSON.parse(data);
    if (event.type === 'error') assertMatchesSpec('Error', { error: event.error }, `SSE ${url}`);
    else {
      assertMatchesSpec('ImageStreamEvent', event, `SSE ${url}`);
      // Edits stream image_edit.* events, generations image_generation.* (what the SDKs' event types say).
      const prefix = /\/images\/edits/.test(url) ? 'image_edit.' : 'image_generation.';
      if (!String(event.type).startsWith(prefix)) throw new Error(`SSE ${url}: event type ${event.type} should start with ${prefix}`);
    }
    specCounters.validated++;
  }
}

/** Raw HTTP for cases the SDK cannot express (malformed JSON, wrong methods, huge bodies). */
export async function rawRequest(
  url: string,
  init: RequestInit & { path: string },
): Promise<{ status: number; headers: Headers; body: any }> {
  const response = await fetch(`${url}${init.path}`, init);
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON; the caller asserts on text
  }
  if (!response.ok) assertMatchesSpec('Error', body, `${response.status} ${init.path}`);
  return { status: response.status, headers: response.headers, body };
}

/** Adds Deepshi's extra request fields (seed, width, aspect_ratio…) that the SDK's types do not declare. */
export function withExtras<T extends object>(params: T, extras: Record<string, unknown>): T {
  return { ...params, ...extras } as T;
}
