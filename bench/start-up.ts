/**
 * Start-up time: from spawning the server to its first 200 on /healthz, for `npm start`'s command (package.json) and,
 * for comparison in the same run, the TypeScript sources run through tsx (what `npm start` ran before the compiled
 * build). Each target is started BENCH_RUNS times (default 7), alternating, on a fresh SQLite file; medians printed.
 *
 *   npm run build:server && node --import tsx bench/start-up.ts
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const RUNS = Number(process.env.BENCH_RUNS ?? 7);

const start: string = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.start;
const startArgs = start.split(/\s+/).slice(1);
const nodeFlags = startArgs.filter((word) => word.startsWith('--') && word !== '--import');
const targets: Array<{ name: string; args: string[] }> = [
  { name: `npm start (${startArgs.join(' ')})`, args: startArgs },
  { name: 'tsx src/main.ts (sources, transpiled at start)', args: [...nodeFlags, '--import', 'tsx', 'src/main.ts'] },
];

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function timeStart(args: string[], dir: string, run: number): Promise<number> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    stdio: 'ignore',
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      DATABASE_URL: `sqlite:${path.join(dir, `s${run}.db`)}`,
    },
  });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited with ${child.exitCode}`);
      try {
        if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return performance.now() - started;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  } finally {
    child.kill('SIGKILL');
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-start-'));
const times = targets.map(() => [] as number[]);
try {
  for (let run = 0; run < RUNS; run++) {
    for (const [index, target] of targets.entries()) times[index].push(await timeStart(target.args, dir, run * targets.length + index));
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];
console.log(
  `start-up to the first /healthz 200, median of ${RUNS}, node ${process.version}, ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}`,
);
for (const [index, target] of targets.entries()) console.log(`${target.name.padEnd(70)} ${median(times[index]).toFixed(0).padStart(6)} ms`);
console.log(`ratio (npm start / tsx): ${(median(times[0]) / median(times[1])).toFixed(2)}`);
