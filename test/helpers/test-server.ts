import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import OpenAI from 'openai';
import pino from 'pino';
import { loadConfig } from '../../src/config/config.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import type { ImageAdapter } from '../../src/providers/types.ts';
import { registerDeepshiServer } from './documented-http.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

export interface TestServer {
  server: RunningServer;
  url: string;
  /** An OpenAI SDK client for a key (like every fetch to this server, its responses are checked against /openapi.json). */
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
  const unregister = registerDeepshiServer(url);

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
      unregister();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Raw HTTP for cases the SDK cannot express (malformed JSON, wrong methods, huge bodies); checked like every fetch. */
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
  return { status: response.status, headers: response.headers, body };
}

/** Adds Deepshi's extra request fields (seed, width, aspect_ratio…) that the SDK's types do not declare. */
export function withExtras<T extends object>(params: T, extras: Record<string, unknown>): T {
  return { ...params, ...extras } as T;
}
