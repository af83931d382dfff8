/**
 * Hot-path benchmark: auth → hold → upstream → settle → respond, measured as a ratio against calling the same
 * upstream directly, in one run on one machine. The upstream is a local OpenAI-compatible mock answering at once
 * with a realistic ~1.5 MB base64 PNG, so what is measured is Deepshi's own overhead (including passing a
 * multi-megabyte body through) and the durable ledger writes.
 *
 *   npm run bench                       (defaults: 20 s per target, 32 connections)
 *   BENCH_SECONDS=10 BENCH_CONNECTIONS=64 npm run bench
 *
 * Processes: this one generates load; the mock upstream and Deepshi each run in their own child process.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { parse as parseYaml } from 'yaml';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROOT = path.resolve(import.meta.dirname, '..');
const ADMIN = 'bench-admin-token-0123456789';
/** BENCH_PEER=portkey adds a peer gateway to the same run: Portkey's open-source gateway, proxying to the same mock. */
const PEER = process.env.BENCH_PEER;
const PORTKEY_VERSION = '1.15.2';

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-bench-'));
  const children: ChildProcess[] = [];
  try {
    const upstream = await startChild(['--import', 'tsx', path.join(ROOT, 'bench/mock-upstream.ts')], {}, /listening on (\S+)/, children);
    const catalog = JSON.parse(JSON.stringify(parseYaml(fs.readFileSync(path.join(ROOT, 'catalog/models.yaml'), 'utf8'))));
    catalog.models = catalog.models.filter((model: { id: string }) => model.id === 'deepshi-image-1');
    catalog.models[0].id = 'bench-image';
    catalog.models[0].routes = [
      {
        provider: 'openai-compatible',
        upstream_model: 'bench-image',
        credentials_env: 'BENCH_UPSTREAM_KEY',
        base_url_env: 'BENCH_UPSTREAM_URL',
      },
    ];
    fs.writeFileSync(path.join(dir, 'catalog.json'), JSON.stringify(catalog));
    const port = await freePort();
    const gateway = `http://127.0.0.1:${port}`;
    await startChild(
      [
        ...(process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : []),
        ...serverNodeFlags(),
        path.join(ROOT, 'dist/main.js'),
      ],
      {
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        DEEPSHI_DEV_ACCOUNT: 'false',
        DEEPSHI_ADMIN_TOKEN: ADMIN,
        DATABASE_URL: process.env.BENCH_DATABASE_URL ?? `sqlite:${path.join(dir, 'bench.db')}`,
        DEEPSHI_CATALOG: path.join(dir, 'catalog.json'),
        BENCH_UPSTREAM_KEY: 'sk-bench',
        BENCH_UPSTREAM_URL: upstream,
      },
      undefined,
      children,
    );
    await waitForHealth(gateway);

    const peer = PEER === 'portkey' ? await startPortkey(upstream, children) : undefined;
    if (PEER !== undefined && !peer) throw new Error(`BENCH_PEER=${PEER}: only "portkey" is known`);

    const account = await admin(gateway, '/admin/v1/accounts', { name: 'bench', credits: '1000000' });
    const key = (await admin(gateway, '/admin/v1/keys', { account_id: account.id, name: 'bench' })).key;
    const body = JSON.stringify({ model: 'bench-image', prompt: 'a benchmark of a lighthouse at dusk', width: 1024, height: 1024 });

    await load(upstream, { authorization: 'Bearer sk-bench' }, body, 3); // warm-up
    await load(gateway, { authorization: `Bearer ${key}` }, body, 3);
    if (peer) await load(peer.base, peer.headers, body, 3);
    // One connection: the latency Deepshi adds to a single request on an idle machine.
    const directOne = await load(upstream, { authorization: 'Bearer sk-bench' }, body, SECONDS / 2, 1);
    const viaDeepshiOne = await load(gateway, { authorization: `Bearer ${key}` }, body, SECONDS / 2, 1);
    const viaPeerOne = peer ? await load(peer.base, peer.headers, body, SECONDS / 2, 1) : undefined;
    // Many connections: throughput, with every target sharing the machine with the load generator and the mock.
    const direct = await load(upstream, { authorization: 'Bearer sk-bench' }, body, SECONDS);
    const viaDeepshi = await load(gateway, { authorization: `Bearer ${key}` }, body, SECONDS);
    const viaPeer = peer ? await load(peer.base, peer.headers, body, SECONDS) : undefined;
    const ledger = await admin(gateway, `/admin/v1/accounts/${account.id}`);

    const row = (name: string, result: LoadResult) =>
      `${name.padEnd(16)} ${result.rps.toFixed(0).padStart(7)} req/s   p50 ${result.p50.toFixed(1).padStart(7)} ms   p99 ${result.p99.toFixed(1).padStart(7)} ms   errors ${result.errors}`;
    console.log(
      `\n${CONNECTIONS} connections, ${SECONDS} s each, ${(result0Bytes / 1e6).toFixed(2)} MB responses, node ${process.version}, ${os.cpus().length} cores`,
    );
    console.log('1 connection:');
    console.log(row('direct upstream', directOne));
    console.log(row('via Deepshi', viaDeepshiOne));
    if (viaPeerOne) console.log(row(`via ${PEER}`, viaPeerOne));
    console.log(`latency added per request (p50): ${(viaDeepshiOne.p50 - directOne.p50).toFixed(2)} ms`);
    if (viaPeerOne) console.log(`latency added by ${PEER} (p50): ${(viaPeerOne.p50 - directOne.p50).toFixed(2)} ms`);
    console.log(`${CONNECTIONS} connections:`);
    console.log(row('direct upstream', direct));
    console.log(row('via Deepshi', viaDeepshi));
    if (viaPeer) console.log(row(`via ${PEER}`, viaPeer));
    console.log(`throughput ratio (Deepshi / direct): ${(viaDeepshi.rps / direct.rps).toFixed(3)}`);
    if (viaPeer)
      console.log(
        `throughput ratio (Deepshi / ${PEER}): ${(viaDeepshi.rps / viaPeer.rps).toFixed(3)}; ${PEER} / direct: ${(viaPeer.rps / direct.rps).toFixed(3)}`,
      );
    console.log(
      `p50 latency added by Deepshi: ${(viaDeepshi.p50 - direct.p50).toFixed(1)} ms; p99 added: ${(viaDeepshi.p99 - direct.p99).toFixed(1)} ms`,
    );
    console.log(`account after the run: balance ${ledger.balance}, held ${ledger.held} (held must be 0)`);
    const serverNodeArgs = serverNodeFlags().join(' ') || 'none';
    console.log(`Deepshi peak RSS: ${peakRssMb(children[1].pid)} (node flags: ${serverNodeArgs})`);
  } finally {
    for (const child of children) child.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

let result0Bytes = 0;

async function load(
  base: string,
  headers: Record<string, string>,
  body: string,
  seconds: number,
  connections = CONNECTIONS,
): Promise<LoadResult> {
  const pool = new Pool(base, { connections, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < deadline) {
        const started = performance.now();
        try {
          const response = await pool.request({
            path: '/v1/images/generations',
            method: 'POST',
            headers: { ...headers, 'content-type': 'application/json' },
            body,
          });
          const bytes = Buffer.from(await response.body.arrayBuffer());
          if (response.statusCode !== 200) errors++;
          else result0Bytes = bytes.length;
        } catch {
          errors++;
        }
        latencies.push(performance.now() - started);
      }
    }),
  );
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { rps: latencies.length / seconds, p50: at(0.5), p99: at(0.99), errors };
}

/**
 * The Node flags `npm start` gives the server (package.json), so the benchmark measures what operators run;
 * BENCH_NODE_FLAGS replaces them (e.g. BENCH_NODE_FLAGS=' ' to measure without any).
 */
function serverNodeFlags(): string[] {
  if (process.env.BENCH_NODE_FLAGS !== undefined) return process.env.BENCH_NODE_FLAGS.split(' ').filter(Boolean);
  const start: string = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.start;
  return start
    .split(' ')
    .slice(1)
    .filter((word) => word.startsWith('--') && word !== '--import');
}

/**
 * Portkey's gateway (npm @portkey-ai/gateway, pinned), installed on first use into a cache outside the repo (it is
 * not a dependency of Deepshi) and started headless, routed to the mock with its custom-host headers. It proxies
 * only: no keys, no ledger, no database, so it is a floor for a gateway's overhead rather than a like-for-like peer.
 */
async function startPortkey(upstream: string, children: ChildProcess[]): Promise<{ base: string; headers: Record<string, string> }> {
  const cache = path.join(os.homedir(), '.cache', 'deepshi-bench', `portkey-${PORTKEY_VERSION}`);
  const entry = path.join(cache, 'node_modules/@portkey-ai/gateway/build/start-server.js');
  if (!fs.existsSync(entry)) {
    fs.mkdirSync(cache, { recursive: true });
    execFileSync(
      'npm',
      ['install', '--prefix', cache, `@portkey-ai/gateway@${PORTKEY_VERSION}`, '--no-audit', '--no-fund', '--ignore-scripts'],
      { stdio: 'inherit' },
    );
  }
  const port = await freePort();
  const child = spawn(process.execPath, [entry, `--port=${port}`, '--headless'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, NODE_ENV: 'production' },
  });
  children.push(child);
  const base = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      await fetch(base);
      return {
        base,
        headers: { authorization: 'Bearer sk-bench', 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${upstream}/v1` },
      };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error('portkey did not start');
}

/** The process's peak resident set (Linux /proc VmHWM), the memory cost of the server's settings. */
function peakRssMb(pid: number | undefined): string {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? `${(Number(match[1]) / 1024).toFixed(0)} MB` : 'unknown';
  } catch {
    return 'unknown (no /proc)';
  }
}

async function admin(base: string, route: string, body?: unknown) {
  const response = await fetch(base + route, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${route}: ${response.status} ${await response.text()}`);
  return response.json();
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitForHealth(base: string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${base} did not become healthy`);
}

function startChild(args: string[], env: Record<string, string>, ready: RegExp | undefined, children: ChildProcess[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    let output = '';
    if (!ready) resolve('');
    child.stdout!.on('data', (chunk) => {
      output += chunk;
      const match = ready?.exec(output);
      if (match) resolve(match[1]);
    });
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${output.slice(-500)}`)));
  });
}

await main();
