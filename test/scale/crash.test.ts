/**
 * kill -9 of an instance with generations in flight: its holds expire and are released by the sweeper of the other
 * instance (or of the restarted one), each exactly once; nothing stays held; an Idempotency-Key retry on the other
 * instance runs the request once more and is charged once.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, it } from 'node:test';
import { assertLedgerInvariant } from '../store/store-contract.ts';
import { Cluster, admin, createAccount, generate, scaleSuite, sleep, type Instance, type Outcome } from './cluster.ts';

// Short deadlines so holds expire in about 2 s: generation deadline 1.5 s + grace 0.5 s; sweeps every 200 ms.
const TIMINGS = { DEEPSHI_GENERATION_TIMEOUT_MS: '1500', DEEPSHI_HOLD_GRACE_MS: '500', DEEPSHI_SWEEP_INTERVAL_MS: '200' };

scaleSuite('kill -9 with generations in flight', () => {
  const cluster = new Cluster();
  let a: Instance;
  let b: Instance;

  before(async () => {
    await cluster.start();
    [a, b] = await Promise.all([cluster.startInstance('A', TIMINGS), cluster.startInstance('B', TIMINGS)]);
  });
  after(() => cluster.stop());

  it('no hold outlives its instance, every request id has exactly one resolution, and an idempotent retry is charged once', async () => {
    const account = await createAccount(a, '10');
    const idempotencyKey = randomUUID();
    const hung = { model: 'scale-upstream', prompt: 'hang on A' };

    // In flight on A when it dies: 8 hanging generations, one of them with an Idempotency-Key.
    const onA: Array<Promise<Outcome>> = Array.from({ length: 7 }, (_, i) =>
      generate(a, account.key, { ...hung, prompt: `hang on A ${i}` }),
    );
    onA.push(generate(a, account.key, hung, { 'idempotency-key': idempotencyKey }));
    // On B meanwhile: two that finish (settled) and two that hit B's own deadline (released, 504).
    const onB = [
      generate(b, account.key, { model: 'scale-upstream', prompt: 'slow:200 fine' }),
      generate(b, account.key, { model: 'deepshi-sketch', prompt: 'fine', width: 64, height: 64 }),
      generate(b, account.key, { model: 'scale-upstream', prompt: 'hang on B 1' }),
      generate(b, account.key, { model: 'scale-upstream', prompt: 'hang on B 2' }),
    ];
    await waitFor(async () => cluster.upstream.received >= 11, 'every hanging request to reach the upstream (holds taken)');
    const heldBeforeKill = (await cluster.store.listRequests(account.accountId, 100)).filter((r) => r.status === 'held').length;
    assert.ok(heldBeforeKill >= 10, `8 on A and 2 hanging on B are held (${heldBeforeKill})`);

    await a.kill('SIGKILL');
    assert.deepEqual(
      (await Promise.all(onA)).map((r) => r.status),
      Array(8).fill(0),
      "A's callers lost their connections",
    );
    const bStatuses = (await Promise.all(onB)).map((r) => r.status);
    assert.deepEqual(bStatuses, [200, 200, 504, 504]);

    // While the dead request's hold is still held, a retry with its key is told to wait.
    cluster.upstream.hang = false;
    const early = await generate(b, account.key, hung, { 'idempotency-key': idempotencyKey });
    assert.equal(early.status, 409);
    assert.equal(early.headers.get('retry-after'), '2');

    // B's sweeper releases A's holds once they expire (~2 s after they were taken).
    await waitFor(
      async () => (await admin(b, 'GET', `/admin/v1/accounts/${account.accountId}`)).held === '0',
      'the held balance to return to 0',
      10_000,
    );

    // The retry now takes over the key (nothing was charged) and runs once.
    const retry = await generate(b, account.key, hung, { 'idempotency-key': idempotencyKey });
    assert.equal(retry.status, 200);
    assert.equal(retry.headers.get('idempotent-replayed'), null);
    const again = await generate(b, account.key, hung, { 'idempotency-key': idempotencyKey });
    assert.equal(again.headers.get('idempotent-replayed'), 'true');

    // A restarted A sweeps at start-up too and finds nothing left to resolve.
    const restarted = await cluster.startInstance('A2', TIMINGS);
    assert.equal((await generate(restarted, account.key, { model: 'deepshi-sketch', prompt: 'after', width: 64, height: 64 })).status, 200);

    const requests = await cluster.store.listRequests(account.accountId, 1000);
    assert.equal(requests.length, 8 + 4 + 1 + 1);
    assert.deepEqual(
      requests.filter((r) => r.status === 'held'),
      [],
      'no hold remains open',
    );
    const ledger = await cluster.store.listLedger(account.accountId, 10_000);
    for (const request of requests) {
      const entries = ledger.filter((entry) => entry.requestId === request.id);
      assert.deepEqual(
        entries.map((e) => e.kind).sort(),
        ['hold', request.status === 'settled' ? 'settle' : 'release'].sort(),
        `request ${request.id}: one hold, one resolution`,
      );
    }
    const fromA = requests.filter((r) => r.status === 'released' && String(r.detail?.reason).startsWith('expired'));
    assert.equal(fromA.length, 8, "A's eight were released by the sweeper (not charged: their callers never got images)");
    const settled = requests.filter((r) => r.status === 'settled');
    assert.equal(settled.length, 4, "B's two, the idempotent retry, and the one after restart");
    await assertLedgerInvariant(cluster.store, account.accountId);
    const spent = settled.reduce((sum, r) => sum + r.cost, 0n);
    const state = await cluster.store.getAccount(account.accountId);
    assert.equal(state?.held, 0n);
    assert.equal(state?.balance, 10_000_000_000n - spent);
    assert.equal((await cluster.store.getIdempotencyKey(account.accountId, idempotencyKey))?.requestId, retry.headers.get('x-request-id'));
  });
});

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
