/**
 * What recording a key's last use costs on the authentication path, measured as a ratio in one run on one machine
 * (SQLite, as the embedded default runs it: WAL, synchronous=FULL; PostgreSQL too when BENCH_DATABASE_URL is set).
 *
 *   node --import tsx bench/key-last-used.ts
 *   BENCH_DATABASE_URL=postgres://… node --import tsx bench/key-last-used.ts   (adds PostgreSQL, in a schema of its own)
 *
 * One run (2 shared cores, SQLite on local disk, PostgreSQL 15 on localhost), per authentication of one key:
 *   SQLite      lookup only 28.9 µs, write-behind 23.0 µs (0.80x: noise), write per request 92.2 µs (3.19x)
 *   PostgreSQL  lookup only 372.6 µs, write-behind 230.8 µs (0.62x: noise), write per request 4860 µs (13.0x)
 * So the write-behind costs nothing measurable on the hot path, where a statement per request would triple it.
 *
 * Three ways over the same N authentications of one key:
 *   lookup only        findApiKeyByHash with last use switched off (the floor)
 *   write-behind       findApiKeyByHash as shipped: last_used_at written behind the request, at most once a minute
 *   write per request  findApiKeyByHash followed by an awaited UPDATE of last_used_at (the naive way)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { issueApiKey, newKeyId } from '../src/auth/api-keys.ts';
import { openStore } from '../src/store/open-store.ts';
import type { Store } from '../src/store/types.ts';

const N = Number(process.env.BENCH_N ?? 5000);

async function measure(label: string, store: Store, hash: string, keyId: string, mode: 'off' | 'behind' | 'sync'): Promise<number> {
  const dashboard = store.dashboard as { noteKeyUse: (id: string, now: number) => void };
  const original = dashboard.noteKeyUse;
  if (mode !== 'behind') dashboard.noteKeyUse = () => {};
  const started = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const record = await store.findApiKeyByHash(hash);
    if (mode === 'sync') await syncTouch(store, keyId);
    if (!record) throw new Error('key not found');
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  dashboard.noteKeyUse = original;
  console.log(`${label.padEnd(20)} ${((ms / N) * 1000).toFixed(1).padStart(8)} µs per authentication`);
  return ms;
}

/** The naive alternative: one awaited statement per request (a setKeyLimits-sized UPDATE on the key's row). */
async function syncTouch(store: Store, keyId: string): Promise<void> {
  const record = await store.getApiKey(keyId);
  await store.setApiKeyLimits(keyId, record!.limits);
}

async function run(url: string, label: string) {
  const store = await openStore(url);
  try {
    const account = await store.createAccount({ name: 'bench', credits: 0n });
    const issued = issueApiKey('');
    const key = await store.createApiKey({
      id: newKeyId(),
      accountId: account.id,
      name: 'bench',
      models: null,
      hash: issued.hash,
      display: issued.display,
    });
    for (let i = 0; i < 200; i++) await store.findApiKeyByHash(issued.hash); // warm up
    console.log(`\n${label}, ${N} authentications of one key`);
    const off = await measure('lookup only', store, issued.hash, key.id, 'off');
    const behind = await measure('write-behind', store, issued.hash, key.id, 'behind');
    const sync = await measure('write per request', store, issued.hash, key.id, 'sync');
    console.log(`write-behind / lookup only: ${(behind / off).toFixed(2)}x; write per request / lookup only: ${(sync / off).toFixed(2)}x`);
  } finally {
    await store.close();
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-bench-lastused-'));
try {
  await run(`sqlite:${path.join(dir, 'bench.db')}`, 'SQLite (WAL, synchronous=FULL)');
  if (process.env.BENCH_DATABASE_URL) {
    // A schema of its own, dropped afterwards, so the bench never leaves tables in the database it is pointed at.
    const schema = `deepshi_bench_${process.pid}`;
    const admin = new pg.Client({ connectionString: process.env.BENCH_DATABASE_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    try {
      const url = new URL(process.env.BENCH_DATABASE_URL);
      url.searchParams.set('options', `-c search_path=${schema}`);
      await run(url.toString(), 'PostgreSQL');
    } finally {
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
