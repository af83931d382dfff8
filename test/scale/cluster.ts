/**
 * Multi-instance harness: real Deepshi server processes (`node dist/main.js`, the compiled build `npm start`
 * runs; `npm test` builds it first) on random ports, sharing one PostgreSQL schema and one Redis key prefix, in front of a controllable
 * OpenAI-compatible upstream (test code) reached through the shipped `openai-compatible` adapter.
 *
 * These tests need PostgreSQL and Redis: without DEEPSHI_TEST_POSTGRES_URL / DEEPSHI_TEST_REDIS_URL they FAIL under
 * CI and are skipped locally (the rule of test/store/postgres-store.test.ts).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { parse as parseYaml } from 'yaml';
import { renderSketch } from '../../src/images/sketch.ts';
import { PostgresStore } from '../../src/store/postgres/postgres-store.ts';
import { registerDeepshiServer } from '../helpers/documented-http.ts';
import { npmStartArgs } from '../helpers/npm-start.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
export const ADMIN_TOKEN = 'scale-admin-token-0123456789abcdef';
const POSTGRES = process.env.DEEPSHI_TEST_POSTGRES_URL;
const REDIS = process.env.DEEPSHI_TEST_REDIS_URL;
const HOW_TO = 'start them and export the variables with: eval "$(bash .ci/services.sh)"';

/** describe() when PostgreSQL and Redis are configured; otherwise a failing (CI) or skipped (local) test saying why. */
export function scaleSuite(name: string, body: () => void): void {
  const missing = [!POSTGRES && 'DEEPSHI_TEST_POSTGRES_URL', !REDIS && 'DEEPSHI_TEST_REDIS_URL'].filter(Boolean).join(' and ');
  if (!missing) return void describe(name, body);
  if (process.env.CI) test(name, () => assert.fail(`${missing} not set, but CI must run the multi-instance tests (${HOW_TO})`));
  else test(name, { skip: `${missing} not set; ${HOW_TO}` }, () => {});
}

export interface Instance {
  name: string;
  url: string;
  process: ChildProcess;
  /** The last log lines, for failure messages. */
  logs(): string;
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): Promise<void>;
}

/**
 * One shared environment: a fresh PostgreSQL schema (`options=-c search_path=…`), a unique Redis prefix, the fake
 * upstream, and a catalog adding `scale-upstream` (openai-compatible → the fake upstream, $0.01 per image).
 */
export class Cluster {
  readonly schema = `deepshi_scale_${process.pid}_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
  readonly redisPrefix = `deepshi-scale:${process.pid}-${randomUUID().slice(0, 8)}:`;
  readonly upstream = new FakeUpstream();
  readonly instances: Instance[] = [];
  private readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-scale-'));
  databaseUrl = '';
  /** The test's own view of the database, for ledger checks. */
  store!: PostgresStore;

  async start(): Promise<void> {
    await withAdmin((client) => client.query(`CREATE SCHEMA ${this.schema}`));
    const url = new URL(POSTGRES!);
    url.searchParams.set('options', `-c search_path=${this.schema}`);
    this.databaseUrl = url.toString();
    this.store = await PostgresStore.connect(this.databaseUrl);
    await this.upstream.start();
    const catalog = parseYaml(fs.readFileSync(path.join(ROOT, 'catalog/models.yaml'), 'utf8'));
    const sketch = catalog.models.find((model: { id: string }) => model.id === 'deepshi-sketch');
    catalog.models.push({
      ...structuredClone(sketch),
      id: 'scale-upstream',
      name: 'Fake upstream for the multi-instance tests',
      streaming: false,
      max_partial_images: 0,
      pricing: { unit: 'image', base: '0.01' },
      routes: [{ provider: 'openai-compatible', base_url_env: 'DEEPSHI_TEST_UPSTREAM_URL' }],
    });
    fs.writeFileSync(path.join(this.dir, 'catalog.json'), JSON.stringify(catalog));
  }

  /** Starts `node dist/main.js` with the shared settings plus `env`; resolves once it listens. */
  async startInstance(name: string, env: Record<string, string> = {}): Promise<Instance> {
    const child = spawn(process.execPath, npmStartArgs(), {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: '0',
        HOST: '127.0.0.1',
        DATABASE_URL: this.databaseUrl,
        REDIS_URL: REDIS!,
        DEEPSHI_REDIS_PREFIX: this.redisPrefix,
        DEEPSHI_ADMIN_TOKEN: ADMIN_TOKEN,
        DEEPSHI_DEV_ACCOUNT: 'false',
        DEEPSHI_CATALOG: path.join(this.dir, 'catalog.json'),
        DEEPSHI_TEST_UPSTREAM_URL: this.upstream.url,
        LOG_LEVEL: 'info',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    let listening: (url: string) => void = () => {};
    const url = new Promise<string>((resolve) => (listening = resolve));
    const take = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        lines.push(line);
        if (lines.length > 300) lines.shift();
        const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
        if (match) listening(match[1]);
      }
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const instance: Instance = {
      name,
      url: '',
      process: child,
      logs: () => lines.slice(-40).join('\n'),
      exited,
      async kill(signal) {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        await exited;
      },
    };
    this.instances.push(instance);
    let timer: NodeJS.Timeout | undefined;
    const started = await Promise.race([
      url,
      exited.then((code) => {
        throw new Error(`instance ${name} exited with ${code} before listening:\n${instance.logs()}`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`instance ${name} did not start within 30 s:\n${instance.logs()}`)), 30_000);
      }),
    ]).finally(() => clearTimeout(timer));
    instance.url = started;
    child.on('exit', registerDeepshiServer(started));
    return instance;
  }

  async stop(): Promise<void> {
    await Promise.all(this.instances.map((instance) => instance.kill('SIGKILL')));
    await this.store?.close();
    await this.upstream.stop();
    await withAdmin((client) => client.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`)).catch(() => {});
    const redis = new Redis(REDIS!);
    try {
      const keys = await redis.keys(`${this.redisPrefix}*`);
      if (keys.length) await redis.del(...keys);
    } finally {
      await redis.quit().catch(() => redis.disconnect());
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Calls an instance's admin API; throws on non-2xx. */
export async function admin<T = Record<string, any>>(instance: Instance, method: string, route: string, body?: unknown): Promise<T> {
  const response = await fetch(`${instance.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`admin ${method} ${route} on ${instance.name} → ${response.status} ${JSON.stringify(json)}`);
  return json as T;
}

/** An account with `credits` USD and one key, created through `instance`. */
export async function createAccount(instance: Instance, credits: string): Promise<{ accountId: string; keyId: string; key: string }> {
  const account = await admin(instance, 'POST', '/admin/v1/accounts', { name: 'scale', credits });
  const key = await admin(instance, 'POST', '/admin/v1/keys', { account_id: account.id, name: 'scale' });
  return { accountId: account.id, keyId: key.id, key: key.key };
}

export interface Outcome {
  status: number;
  headers: Headers;
  body: any;
}

/** POST /v1/images/generations; network errors (a killed instance) come back as status 0. */
export async function generate(
  instance: Instance,
  key: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<Outcome> {
  try {
    const response = await fetch(`${instance.url}/v1/images/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: response.status, headers: response.headers, body: parsed };
  } catch {
    return { status: 0, headers: new Headers(), body: undefined };
  }
}

/**
 * An OpenAI-compatible image server under the tests' control. Prompts steer it: `slow:<ms>` answers after that
 * delay; `hang` never answers while `hang` mode is on; `tag:<name>` counts the call's concurrency under that name
 * (current and peak), measured at the upstream, i.e. real generations in flight.
 */
export class FakeUpstream {
  url = '';
  hang = true;
  received = 0;
  readonly inFlight = new Map<string, number>();
  readonly peak = new Map<string, number>();
  private server: http.Server | undefined;
  private png = '';
  private readonly sockets = new Set<import('node:net').Socket>();

  async start(): Promise<void> {
    this.png = (await renderSketch({ prompt: 'scale', seed: 1, width: 64, height: 64, format: 'png' })).toString('base64');
    this.server = http.createServer((request, response) => void this.handle(request, response));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private async handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    let raw = '';
    for await (const chunk of request) raw += chunk;
    this.received++;
    const body = JSON.parse(raw) as { prompt: string; n?: number };
    const tag = /tag:(\S+)/.exec(body.prompt)?.[1];
    let open = true;
    const finish = () => {
      if (!open) return;
      open = false;
      if (tag) this.inFlight.set(tag, (this.inFlight.get(tag) ?? 1) - 1);
    };
    response.on('close', finish);
    if (tag) {
      const now = (this.inFlight.get(tag) ?? 0) + 1;
      this.inFlight.set(tag, now);
      this.peak.set(tag, Math.max(this.peak.get(tag) ?? 0, now));
    }
    if (body.prompt.includes('hang') && this.hang) return; // never answers; the caller's deadline ends it
    const delay = Number(/slow:(\d+)/.exec(body.prompt)?.[1] ?? 0);
    if (delay) await sleep(delay);
    if (!open) return;
    const data = Array.from({ length: body.n ?? 1 }, () => ({ b64_json: this.png }));
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ created: Math.floor(Date.now() / 1000), data }));
  }
}

async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
