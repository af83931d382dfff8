import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts';
import { runStoreContract } from './store-contract.ts';
import { runDashboardStoreContract } from './dashboard-store-contract.ts';

// A real file (not :memory:) so WAL, synchronous=FULL and the file-backed code paths are what is tested.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-sqlite-store-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let opened = 0;
runStoreContract('sqlite', async () => new SqliteStore(path.join(dir, `store-${++opened}.db`)));
runDashboardStoreContract('sqlite', async () => new SqliteStore(path.join(dir, `store-${++opened}.db`)));

describe('sqlite group commit', () => {
  it('operations issued together share a transaction but fail alone', async () => {
    const store = new SqliteStore(path.join(dir, 'group.db'));
    try {
      const account = await store.createAccount({ name: 'g', credits: 1_000n });
      const reserve = (requestId: string, amount: bigint) =>
        store.reserveCredits({
          requestId,
          accountId: account.id,
          keyId: 'k',
          model: 'm',
          endpoint: 'e',
          amount,
          expiresAt: Date.now() + 60_000,
        });
      // Issued in one tick: a duplicate id (constraint failure) and an overdraft between good operations.
      const results = await Promise.allSettled([
        reserve('a', 100n),
        reserve('a', 100n),
        reserve('b', 5_000n),
        reserve('c', 200n),
        store.addCredits(account.id, -1n, null),
      ]);
      assert.deepEqual(
        results.map((result) => result.status),
        ['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'rejected'],
      );
      assert.deepEqual(
        results.slice(2, 4).map((result) => (result as PromiseFulfilledResult<boolean>).value),
        [false, true],
      );
      const after = await store.getAccount(account.id);
      assert.deepEqual([after!.balance, after!.held], [700n, 300n]);
      const ledger = await store.listLedger(account.id, 10);
      assert.deepEqual(
        ledger.map((entry) => entry.requestId),
        ['c', 'a', null],
      );
    } finally {
      await store.close();
    }
  });
});
