import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts';
import { runStoreContract } from './store-contract.ts';

// A real file (not :memory:) so WAL, synchronous=FULL and the file-backed code paths are what is tested.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-sqlite-store-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let opened = 0;
runStoreContract('sqlite', async () => new SqliteStore(path.join(dir, `store-${++opened}.db`)));
