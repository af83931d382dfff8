/**
 * The Store contract: every implementation (SQLite, PostgreSQL) runs exactly this suite.
 *
 * After every scenario the ledger invariant is checked for every account the scenario touched:
 *   balance == Σ available_delta and held == Σ held_delta over the account's ledger,
 * and replaying the ledger in id order never takes either running sum below zero.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Nanos } from '../../src/domain/money.ts';
import type { Account, ApiKeyRecord, IdempotencyClaimInput, ReserveInput, Store } from '../../src/store/types.ts';
import { jobStoreScenarios } from './job-store-contract.ts';

const ALL = 1_000_000;
const HOUR = 3_600_000;

export function runStoreContract(name: string, open: () => Promise<Store>): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    /** Accounts created by the running scenario; afterEach checks the ledger invariant on each. */
    let touched = new Set<string>();

    before(async () => {
      store = await open();
    });
    after(async () => {
      await store?.close();
    });
    afterEach(async () => {
      const ids = [...touched];
      touched = new Set();
      for (const id of ids) await assertLedgerInvariant(store, id);
    });

    const uid = (prefix: string) => `${prefix}_${randomUUID().replace(/-/g, '')}`;

    async function account(credits: Nanos, accountName = 'test'): Promise<Account> {
      const created = await store.createAccount({ name: accountName, credits });
      touched.add(created.id);
      return created;
    }

    function reservation(accountId: string, amount: Nanos, extra: Partial<ReserveInput> = {}): ReserveInput {
      return {
        requestId: uid('req'),
        accountId,
        keyId: 'key_test',
        model: 'test/model',
        endpoint: '/v1/images/generations',
        amount,
        expiresAt: Date.now() + HOUR,
        ...extra,
      };
    }

    async function balances(accountId: string): Promise<{ balance: Nanos; held: Nanos }> {
      const found = await store.getAccount(accountId);
      assert.ok(found, `account ${accountId} exists`);
      return { balance: found.balance, held: found.held };
    }

    async function newKey(
      accountId: string,
      models: string[] | null = null,
      keyName = 'key',
    ): Promise<{ key: ApiKeyRecord; hash: string }> {
      const hash = uid('hash');
      const key = await store.createApiKey({
        id: uid('key'),
        accountId,
        name: keyName,
        models,
        hash,
        display: `sk-bf-${hash.slice(5, 9)}…${hash.slice(-4)}`,
      });
      return { key, hash };
    }

    describe('lifecycle', () => {
      it('reports its kind, answers ping, and is empty before the first account', async () => {
        assert.ok(store.kind === 'sqlite' || store.kind === 'postgres');
        await store.ping();
        assert.equal(await store.isEmpty(), true);
        await account(0n);
        assert.equal(await store.isEmpty(), false);
      });
    });

    describe('accounts, credits and ledger', () => {
      it('createAccount with credits records one credit entry with the default note', async () => {
        const before = Date.now();
        const created = await account(5_000_000_000n, 'Acme');
        assert.match(created.id, /^acct_[0-9a-f]{24}$/);
        assert.equal(created.name, 'Acme');
        assert.equal(created.balance, 5_000_000_000n);
        assert.equal(created.held, 0n);
        assert.ok(created.createdAt >= before - 1000 && created.createdAt <= Date.now() + 1000);
        assert.deepEqual(await store.getAccount(created.id), created);

        const ledger = await store.listLedger(created.id, 10);
        assert.equal(ledger.length, 1);
        assert.equal(ledger[0].kind, 'credit');
        assert.equal(ledger[0].accountId, created.id);
        assert.equal(ledger[0].availableDelta, 5_000_000_000n);
        assert.equal(ledger[0].heldDelta, 0n);
        assert.equal(ledger[0].requestId, null);
        assert.equal(ledger[0].note, 'initial credit');
        assert.equal(typeof ledger[0].id, 'number');
      });

      it('createAccount keeps a custom note and writes no entry for zero credits', async () => {
        const noted = await store.createAccount({ name: 'noted', credits: 7n, note: 'welcome bonus' });
        touched.add(noted.id);
        assert.equal((await store.listLedger(noted.id, 10))[0].note, 'welcome bonus');

        const empty = await account(0n);
        assert.equal(empty.balance, 0n);
        assert.deepEqual(await store.listLedger(empty.id, 10), []);
      });

      it('getAccount of an unknown id is undefined; listAccounts lists in creation order', async () => {
        assert.equal(await store.getAccount('acct_does_not_exist'), undefined);
        const first = await account(1n, 'first');
        await sleep(3);
        const second = await account(2n, 'second');
        const ids = (await store.listAccounts()).map((a) => a.id);
        assert.ok(ids.includes(first.id) && ids.includes(second.id));
        assert.ok(ids.indexOf(first.id) < ids.indexOf(second.id));
        const listed = (await store.listAccounts()).find((a) => a.id === second.id);
        assert.deepEqual(listed, second);
      });

      it('addCredits adds to the balance and records a credit entry; unknown account → undefined', async () => {
        const acct = await account(100n);
        const updated = await store.addCredits(acct.id, 250n, 'top-up');
        assert.ok(updated);
        assert.equal(updated.id, acct.id);
        assert.equal(updated.balance, 350n);
        assert.equal(updated.held, 0n);
        assert.deepEqual(await store.getAccount(acct.id), updated);

        const withoutNote = await store.addCredits(acct.id, 50n, null);
        assert.equal(withoutNote?.balance, 400n);

        const ledger = await store.listLedger(acct.id, 10);
        assert.deepEqual(
          ledger.map((e) => [e.kind, e.availableDelta, e.heldDelta, e.note]),
          [
            ['credit', 50n, 0n, null],
            ['credit', 250n, 0n, 'top-up'],
            ['credit', 100n, 0n, 'initial credit'],
          ],
        );

        assert.equal(await store.addCredits('acct_does_not_exist', 10n, 'nope'), undefined);
        assert.deepEqual(await store.listLedger('acct_does_not_exist', 10), []);
      });

      it('addCredits refuses zero or negative amounts and a balance past the 2^62-nano cap, changing nothing', async () => {
        const acct = await account(100n);
        await assert.rejects(store.addCredits(acct.id, 0n, null));
        await assert.rejects(store.addCredits(acct.id, -5n, null));
        const cap = 2n ** 62n;
        await assert.rejects(store.addCredits(acct.id, cap, null));
        assert.deepEqual(await balances(acct.id), { balance: 100n, held: 0n });
        assert.equal((await store.listLedger(acct.id, 10)).length, 1);
      });

      it('listLedger is newest first and honours the limit', async () => {
        const acct = await account(1n);
        for (let i = 2; i <= 5; i++) await store.addCredits(acct.id, BigInt(i), `credit ${i}`);
        const all = await store.listLedger(acct.id, 100);
        assert.deepEqual(
          all.map((e) => e.availableDelta),
          [5n, 4n, 3n, 2n, 1n],
        );
        for (let i = 1; i < all.length; i++) assert.ok(all[i - 1].id > all[i].id, 'ids strictly decreasing');
        const two = await store.listLedger(acct.id, 2);
        assert.deepEqual(two, all.slice(0, 2));
      });

      it('money beyond 2^53 round-trips exactly as bigint', async () => {
        const big = 2n ** 53n + 1n; // not representable as a JS number
        const acct = await account(big);
        assert.equal(acct.balance, big);
        assert.equal(typeof acct.balance, 'bigint');
        const topped = await store.addCredits(acct.id, 1_000_000_000n * 1_000_000_000n, null); // $1B in nanos
        assert.equal(topped?.balance, big + 10n ** 18n);

        const req = reservation(acct.id, big + 2n);
        assert.equal(await store.reserveCredits(req), true);
        const held = await store.getRequest(req.requestId);
        assert.equal(held?.hold, big + 2n);
        assert.equal(typeof held?.hold, 'bigint');
        assert.equal(await store.settleReservation({ requestId: req.requestId, cost: big, upstreamCost: big - 1n, images: 1 }), true);
        const settled = await store.getRequest(req.requestId);
        assert.equal(settled?.cost, big);
        assert.equal(settled?.upstreamCost, big - 1n);
        assert.deepEqual(await balances(acct.id), { balance: 10n ** 18n, held: 0n });
        const entries = await store.listLedger(acct.id, 10);
        assert.equal(typeof entries[0].availableDelta, 'bigint');
        assert.equal(typeof entries[0].heldDelta, 'bigint');
      });
    });

    describe('API keys', () => {
      it('createApiKey returns the record; it is found by id and by hash and listed', async () => {
        const acct = await account(0n);
        const before = Date.now();
        const { key, hash } = await newKey(acct.id, null, 'prod');
        assert.equal(key.accountId, acct.id);
        assert.equal(key.name, 'prod');
        assert.equal(key.status, 'active');
        assert.equal(key.models, null);
        assert.match(key.display, /^sk-bf-/);
        assert.ok(key.createdAt >= before - 1000 && key.createdAt <= Date.now() + 1000);
        assert.equal('hash' in key, false, 'the record never carries the hash');
        assert.deepEqual(await store.getApiKey(key.id), key);
        assert.deepEqual(await store.findApiKeyByHash(hash), key);
        assert.equal(await store.findApiKeyByHash(uid('hash')), undefined);
        assert.equal(await store.getApiKey('key_does_not_exist'), undefined);
      });

      it("listApiKeys lists one account's live keys in creation order", async () => {
        const acct = await account(0n);
        const other = await account(0n);
        const a = await newKey(acct.id, null, 'a');
        await sleep(3);
        const b = await newKey(acct.id, null, 'b');
        await sleep(3);
        const c = await newKey(acct.id, null, 'c');
        await newKey(other.id, null, 'other');
        assert.deepEqual(
          (await store.listApiKeys(acct.id)).map((k) => k.id),
          [a.key.id, b.key.id, c.key.id],
        );
        await store.revokeApiKey(b.key.id);
        await store.deleteApiKey(c.key.id);
        const listed = await store.listApiKeys(acct.id);
        assert.deepEqual(
          listed.map((k) => [k.id, k.status]),
          [
            [a.key.id, 'active'],
            [b.key.id, 'revoked'],
          ],
        );
        assert.deepEqual(await store.listApiKeys('acct_does_not_exist'), []);
      });

      it('a duplicate hash is rejected', async () => {
        const acct = await account(0n);
        const { hash } = await newKey(acct.id);
        await assert.rejects(
          store.createApiKey({ id: uid('key'), accountId: acct.id, name: 'dup', models: null, hash, display: 'sk-bf-dup' }),
        );
      });

      it('models allowlist: null, a list and an empty list round-trip distinctly', async () => {
        const acct = await account(0n);
        const all = await newKey(acct.id, null);
        const some = await newKey(acct.id, ['openai/gpt-image-1', 'black-forest-labs/flux-1.1-pro']);
        const none = await newKey(acct.id, []);
        assert.equal(all.key.models, null);
        assert.deepEqual(some.key.models, ['openai/gpt-image-1', 'black-forest-labs/flux-1.1-pro']);
        assert.deepEqual(none.key.models, []);
        assert.equal((await store.getApiKey(all.key.id))?.models, null);
        assert.deepEqual((await store.getApiKey(some.key.id))?.models, ['openai/gpt-image-1', 'black-forest-labs/flux-1.1-pro']);
        assert.deepEqual((await store.findApiKeyByHash(none.hash))?.models, []);

        const narrowed = await store.setApiKeyModels(all.key.id, ['z/model', 'a/model']);
        assert.deepEqual(narrowed?.models, ['z/model', 'a/model'], 'order is kept');
        assert.deepEqual((await store.getApiKey(all.key.id))?.models, ['z/model', 'a/model']);
        assert.deepEqual((await store.setApiKeyModels(all.key.id, []))?.models, []);
        assert.deepEqual((await store.findApiKeyByHash(all.hash))?.models, []);
        assert.equal((await store.setApiKeyModels(all.key.id, null))?.models, null);
        assert.equal((await store.getApiKey(all.key.id))?.models, null);
        assert.equal(await store.setApiKeyModels('key_does_not_exist', null), undefined);
      });

      it('rotate: the old hash stops matching, the new one matches, the display changes', async () => {
        const acct = await account(0n);
        const { key, hash } = await newKey(acct.id, ['m']);
        const newHash = uid('hash');
        const rotated = await store.rotateApiKey(key.id, newHash, 'sk-bf-new…0001');
        assert.ok(rotated);
        assert.equal(rotated.id, key.id);
        assert.equal(rotated.display, 'sk-bf-new…0001');
        assert.equal(rotated.status, 'active');
        assert.deepEqual(rotated.models, ['m']);
        assert.equal(rotated.createdAt, key.createdAt);
        assert.equal(await store.findApiKeyByHash(hash), undefined);
        // getApiKey first: finding an active key by hash records its use behind the read (noteKeyUse), so a read
        // after it may already carry lastUsedAt.
        assert.deepEqual(await store.getApiKey(key.id), rotated);
        assert.deepEqual(await store.findApiKeyByHash(newHash), rotated);
        assert.equal(await store.rotateApiKey('key_does_not_exist', uid('hash'), 'x'), undefined);
      });

      it('revoke: status revoked, still found by hash, no longer rotatable', async () => {
        const acct = await account(0n);
        const { key, hash } = await newKey(acct.id);
        const revoked = await store.revokeApiKey(key.id);
        assert.equal(revoked?.status, 'revoked');
        assert.equal(revoked?.id, key.id);
        assert.deepEqual(await store.findApiKeyByHash(hash), revoked);
        assert.equal((await store.getApiKey(key.id))?.status, 'revoked');
        const newHash = uid('hash');
        assert.equal(await store.rotateApiKey(key.id, newHash, 'x'), undefined);
        assert.equal(await store.findApiKeyByHash(newHash), undefined);
        assert.deepEqual(await store.findApiKeyByHash(hash), revoked, 'a refused rotation changes nothing');
        assert.equal(await store.revokeApiKey('key_does_not_exist'), undefined);
      });

      it('delete: not found by hash, getApiKey shows deleted, every later change refused', async () => {
        const acct = await account(0n);
        const { key, hash } = await newKey(acct.id);
        assert.equal(await store.deleteApiKey(key.id), true);
        assert.equal(await store.findApiKeyByHash(hash), undefined);
        const gone = await store.getApiKey(key.id);
        assert.equal(gone?.status, 'deleted');
        assert.equal(gone?.id, key.id);
        assert.equal(await store.deleteApiKey(key.id), false);
        assert.equal(await store.revokeApiKey(key.id), undefined);
        assert.equal(await store.rotateApiKey(key.id, uid('hash'), 'x'), undefined);
        assert.equal(await store.setApiKeyModels(key.id, ['m']), undefined);
        assert.equal((await store.getApiKey(key.id))?.status, 'deleted');
        assert.equal(await store.deleteApiKey('key_does_not_exist'), false);

        // A revoked key can be deleted too.
        const other = await newKey(acct.id);
        await store.revokeApiKey(other.key.id);
        assert.equal(await store.deleteApiKey(other.key.id), true);
        assert.equal(await store.findApiKeyByHash(other.hash), undefined);
      });

      it('limits: a new key uses the server defaults; set, change and clear round-trip; deleted keys refuse', async () => {
        const acct = await account(0n);
        const { key, hash } = await newKey(acct.id);
        const defaults = { requestsPerMinute: null, imagesPerMinute: null, maxInFlight: null, tokensPerMinute: null, maxQueuedJobs: null };
        assert.deepEqual(key.limits, defaults);
        const set = await store.setApiKeyLimits(key.id, {
          requestsPerMinute: 60,
          imagesPerMinute: 0,
          maxInFlight: 3,
          tokensPerMinute: 40_000,
          maxQueuedJobs: 7,
        });
        assert.deepEqual(
          set?.limits,
          { requestsPerMinute: 60, imagesPerMinute: 0, maxInFlight: 3, tokensPerMinute: 40_000, maxQueuedJobs: 7 },
          '0 (unlimited) is kept apart from null',
        );
        assert.deepEqual(await store.getApiKey(key.id), set);
        assert.deepEqual(await store.findApiKeyByHash(hash), set, 'authentication sees the limits with the key');
        assert.deepEqual((await store.listApiKeys(acct.id))[0].limits, set?.limits);
        assert.deepEqual((await store.setApiKeyLimits(key.id, { ...set!.limits, requestsPerMinute: null }))?.limits, {
          requestsPerMinute: null,
          imagesPerMinute: 0,
          maxInFlight: 3,
          tokensPerMinute: 40_000,
          maxQueuedJobs: 7,
        });
        assert.deepEqual((await store.setApiKeyLimits(key.id, { ...set!.limits, tokensPerMinute: 0 }))?.limits.tokensPerMinute, 0);
        assert.deepEqual((await store.setApiKeyLimits(key.id, { ...set!.limits, maxQueuedJobs: 0 }))?.limits.maxQueuedJobs, 0);
        assert.equal((await store.setApiKeyLimits(key.id, { ...set!.limits, maxQueuedJobs: null }))?.limits.maxQueuedJobs, null);
        assert.deepEqual((await store.setApiKeyLimits(key.id, defaults))?.limits, defaults);
        await store.revokeApiKey(key.id);
        assert.deepEqual(
          (await store.setApiKeyLimits(key.id, { ...defaults, maxInFlight: 1 }))?.limits.maxInFlight,
          1,
          'a revoked key keeps its settings',
        );
        await store.deleteApiKey(key.id);
        assert.equal(await store.setApiKeyLimits(key.id, defaults), undefined);
        assert.equal(await store.setApiKeyLimits('key_does_not_exist', defaults), undefined);
        await assert.rejects(
          store.setApiKeyLimits((await newKey(acct.id)).key.id, { ...defaults, requestsPerMinute: -1 }),
          'negative limits are refused',
        );
        await assert.rejects(
          store.setApiKeyLimits((await newKey(acct.id)).key.id, { ...defaults, maxQueuedJobs: -1 }),
          'a negative max_queued_jobs is refused',
        );
      });
    });

    describe('idempotency keys', () => {
      const DAY = 24 * HOUR;
      function claim(accountId: string, key: string, extra: Partial<IdempotencyClaimInput> = {}): IdempotencyClaimInput {
        const now = Date.now();
        return {
          accountId,
          key,
          requestHash: 'hash-a',
          requestId: uid('req'),
          now,
          lockedUntil: now + 60_000,
          expiresAt: now + DAY,
          ...extra,
        };
      }
      const response = (body: string) => ({
        status: 200,
        headers: { 'content-type': 'application/json; charset=utf-8', 'x-request-cost': '0.04' },
        body,
      });

      it('claim → running; a second claim sees the running record; complete stores the response once', async () => {
        const acct = await account(0n);
        const first = claim(acct.id, 'idem-1');
        assert.deepEqual(await store.claimIdempotencyKey(first), { claimed: true });
        const second = await store.claimIdempotencyKey(claim(acct.id, 'idem-1', { requestHash: 'hash-b' }));
        assert.equal(second.claimed, false);
        assert.ok(!second.claimed);
        assert.deepEqual(second.existing, {
          accountId: acct.id,
          key: 'idem-1',
          requestHash: 'hash-a',
          requestId: first.requestId,
          status: 'running',
          response: null,
          createdAt: first.now,
          lockedUntil: first.lockedUntil,
          expiresAt: first.expiresAt,
        });
        assert.equal(
          await store.completeIdempotencyKey(acct.id, 'idem-1', 'req_someone_else', response('{}')),
          false,
          'only the holder completes',
        );
        const body = `{"data":[{"b64_json":"${'A'.repeat(200_000)}"}],"note":"ü 😀"}`;
        assert.equal(await store.completeIdempotencyKey(acct.id, 'idem-1', first.requestId, response(body)), true);
        assert.equal(
          await store.completeIdempotencyKey(acct.id, 'idem-1', first.requestId, response('{"again":1}')),
          false,
          'completed once',
        );
        const done = await store.getIdempotencyKey(acct.id, 'idem-1');
        assert.equal(done?.status, 'completed');
        assert.deepEqual(done?.response, response(body));
        const third = await store.claimIdempotencyKey(claim(acct.id, 'idem-1'));
        assert.ok(!third.claimed);
        assert.deepEqual(third.existing, done);
        assert.equal(await store.releaseIdempotencyKey(acct.id, 'idem-1', first.requestId), false, 'a completed record is never released');
        assert.equal(await store.getIdempotencyKey(acct.id, 'idem-unknown'), undefined);
      });

      it('settleReservation with `idempotency` saves the response in the same transaction as the charge, once', async () => {
        const acct = await account(1000n);
        const req = reservation(acct.id, 300n);
        const claimed = claim(acct.id, 'idem-settle', { requestId: req.requestId });
        assert.deepEqual(await store.claimIdempotencyKey(claimed), { claimed: true });
        assert.equal(await store.reserveCredits(req), true);
        const saved = response('{"data":[],"usage":{"cost":{"total_cost":0.0000002}}}');
        assert.equal(
          await store.settleReservation({
            requestId: req.requestId,
            cost: 200n,
            images: 1,
            idempotency: { accountId: acct.id, key: 'idem-settle', response: saved },
          }),
          true,
        );
        const record = await store.getIdempotencyKey(acct.id, 'idem-settle');
        assert.equal(record?.status, 'completed');
        assert.deepEqual(record?.response, saved);
        assert.equal((await store.getRequest(req.requestId))?.status, 'settled');
        assert.deepEqual(await balances(acct.id), { balance: 800n, held: 0n });
        // A second settlement changes nothing: neither the money nor the saved response.
        assert.equal(
          await store.settleReservation({
            requestId: req.requestId,
            cost: 1n,
            images: 1,
            idempotency: { accountId: acct.id, key: 'idem-settle', response: response('{}') },
          }),
          false,
        );
        assert.deepEqual((await store.getIdempotencyKey(acct.id, 'idem-settle'))?.response, saved);
        assert.deepEqual(await balances(acct.id), { balance: 800n, held: 0n });
        // A key held by another request is left alone; the charge still settles.
        const other = reservation(acct.id, 100n);
        assert.equal(await store.reserveCredits(other), true);
        assert.equal(
          await store.settleReservation({
            requestId: other.requestId,
            cost: 50n,
            images: 1,
            idempotency: { accountId: acct.id, key: 'idem-settle', response: response('{"x":1}') },
          }),
          true,
        );
        assert.deepEqual((await store.getIdempotencyKey(acct.id, 'idem-settle'))?.response, saved);
      });

      it('keys are scoped to the account', async () => {
        const a = await account(0n);
        const b = await account(0n);
        assert.deepEqual(await store.claimIdempotencyKey(claim(a.id, 'shared-key')), { claimed: true });
        assert.deepEqual(await store.claimIdempotencyKey(claim(b.id, 'shared-key')), { claimed: true });
        assert.notEqual(
          (await store.getIdempotencyKey(a.id, 'shared-key'))?.requestId,
          (await store.getIdempotencyKey(b.id, 'shared-key'))?.requestId,
        );
      });

      it("release forgets a running claim (only its holder's), so the key can be claimed afresh", async () => {
        const acct = await account(0n);
        const first = claim(acct.id, 'idem-release');
        await store.claimIdempotencyKey(first);
        assert.equal(await store.releaseIdempotencyKey(acct.id, 'idem-release', 'req_other'), false);
        assert.equal(await store.releaseIdempotencyKey(acct.id, 'idem-release', first.requestId), true);
        assert.equal(await store.getIdempotencyKey(acct.id, 'idem-release'), undefined);
        assert.deepEqual(await store.claimIdempotencyKey(claim(acct.id, 'idem-release', { requestHash: 'hash-b' })), { claimed: true });
      });

      it('take over: moves a running record to a new request exactly once', async () => {
        const acct = await account(0n);
        const first = claim(acct.id, 'idem-take');
        await store.claimIdempotencyKey(first);
        const move = { accountId: acct.id, key: 'idem-take', fromRequestId: first.requestId, lockedUntil: first.now + 120_000 };
        const results = await Promise.all([
          store.takeOverIdempotencyKey({ ...move, requestId: 'req_t1' }),
          store.takeOverIdempotencyKey({ ...move, requestId: 'req_t2' }),
        ]);
        assert.deepEqual(results.filter(Boolean).length, 1);
        const now = await store.getIdempotencyKey(acct.id, 'idem-take');
        assert.equal(now?.requestId, results[0] ? 'req_t1' : 'req_t2');
        assert.equal(now?.lockedUntil, first.now + 120_000);
        assert.equal(now?.requestHash, 'hash-a');
        assert.equal(
          await store.completeIdempotencyKey(acct.id, 'idem-take', first.requestId, response('{}')),
          false,
          'the old holder can no longer complete',
        );
        assert.equal(await store.completeIdempotencyKey(acct.id, 'idem-take', now!.requestId, response('{}')), true);
        assert.equal(
          await store.takeOverIdempotencyKey({ ...move, fromRequestId: now!.requestId, requestId: 'req_t3' }),
          false,
          'completed records stay',
        );
      });

      it('an expired record is replaced by a new claim and deleted by the reaper', async () => {
        const acct = await account(0n);
        const old = claim(acct.id, 'idem-old', { now: 1_000, lockedUntil: 2_000, expiresAt: 5_000 });
        await store.claimIdempotencyKey(old);
        await store.completeIdempotencyKey(acct.id, 'idem-old', old.requestId, response('{"old":true}'));
        await store.claimIdempotencyKey(claim(acct.id, 'idem-old-2', { now: 1_000, expiresAt: 6_000 }));
        await store.claimIdempotencyKey(claim(acct.id, 'idem-live'));

        const later = claim(acct.id, 'idem-old', { requestHash: 'hash-new' });
        assert.deepEqual(await store.claimIdempotencyKey(later), { claimed: true }, 'past its expiry the key is free');
        const replaced = await store.getIdempotencyKey(acct.id, 'idem-old');
        assert.equal(replaced?.status, 'running');
        assert.equal(replaced?.response, null);
        assert.equal(replaced?.requestHash, 'hash-new');

        assert.equal(await store.deleteExpiredIdempotencyKeys(5_999, 10), 0);
        assert.equal(await store.deleteExpiredIdempotencyKeys(6_000, 10), 1, 'expiry equal to now is expired');
        assert.equal(await store.getIdempotencyKey(acct.id, 'idem-old-2'), undefined);
        assert.ok(await store.getIdempotencyKey(acct.id, 'idem-live'));
        assert.ok(await store.getIdempotencyKey(acct.id, 'idem-old'));
      });

      it('the reaper honours its limit', async () => {
        const acct = await account(0n);
        for (let i = 0; i < 5; i++) await store.claimIdempotencyKey(claim(acct.id, `idem-reap-${i}`, { now: 100, expiresAt: 200 + i }));
        assert.equal(await store.deleteExpiredIdempotencyKeys(1_000, 2), 2);
        assert.equal(await store.getIdempotencyKey(acct.id, 'idem-reap-0'), undefined, 'oldest first');
        assert.ok(await store.getIdempotencyKey(acct.id, 'idem-reap-4'));
        assert.equal(await store.deleteExpiredIdempotencyKeys(1_000, 100), 3);
      });

      it('50 concurrent claims of one key: exactly one wins, every loser sees the winner', async () => {
        const acct = await account(0n);
        const inputs = Array.from({ length: 50 }, () => claim(acct.id, 'idem-race'));
        const results = await Promise.all(inputs.map((input) => store.claimIdempotencyKey(input)));
        const winners = inputs.filter((_, i) => results[i].claimed);
        assert.equal(winners.length, 1);
        for (const result of results) if (!result.claimed) assert.equal(result.existing.requestId, winners[0].requestId);
      });
    });

    describe('reserve', () => {
      it('reserves: available → held, a held request row and one hold entry', async () => {
        const acct = await account(1_000n);
        const req = reservation(acct.id, 300n, { keyId: 'key_abc', model: 'vendor/model-x', endpoint: '/v1/images/edits' });
        const before = Date.now();
        assert.equal(await store.reserveCredits(req), true);
        assert.deepEqual(await balances(acct.id), { balance: 700n, held: 300n });

        const record = await store.getRequest(req.requestId);
        assert.ok(record);
        assert.deepEqual(
          { ...record, createdAt: 0 },
          {
            id: req.requestId,
            accountId: acct.id,
            keyId: 'key_abc',
            model: 'vendor/model-x',
            endpoint: '/v1/images/edits',
            status: 'held',
            hold: 300n,
            cost: 0n,
            upstreamCost: null,
            images: 0,
            detail: null,
            createdAt: 0,
            resolvedAt: null,
            expiresAt: req.expiresAt,
          },
        );
        assert.ok(record.createdAt >= before - 1000 && record.createdAt <= Date.now() + 1000);

        const [entry] = await store.listLedger(acct.id, 1);
        assert.equal(entry.kind, 'hold');
        assert.equal(entry.availableDelta, -300n);
        assert.equal(entry.heldDelta, 300n);
        assert.equal(entry.requestId, req.requestId);
        assert.equal(entry.note, null);
      });

      it('insufficient credit → false and nothing changed', async () => {
        const acct = await account(299n);
        const ledgerBefore = await store.listLedger(acct.id, ALL);
        const req = reservation(acct.id, 300n);
        assert.equal(await store.reserveCredits(req), false);
        assert.deepEqual(await balances(acct.id), { balance: 299n, held: 0n });
        assert.equal(await store.getRequest(req.requestId), undefined);
        assert.deepEqual(await store.listLedger(acct.id, ALL), ledgerBefore);
        assert.deepEqual(await store.listRequests(acct.id, 10), []);
      });

      it('credit already held is not available again', async () => {
        const acct = await account(500n);
        assert.equal(await store.reserveCredits(reservation(acct.id, 400n)), true);
        assert.equal(await store.reserveCredits(reservation(acct.id, 101n)), false);
        assert.equal(await store.reserveCredits(reservation(acct.id, 100n)), true, 'exactly the balance succeeds');
        assert.deepEqual(await balances(acct.id), { balance: 0n, held: 500n });
        assert.equal(await store.reserveCredits(reservation(acct.id, 1n)), false);
      });

      it('unknown account → false', async () => {
        const req = reservation('acct_does_not_exist', 1n);
        assert.equal(await store.reserveCredits(req), false);
        assert.equal(await store.getRequest(req.requestId), undefined);
      });

      it('a duplicate request id is rejected and leaves the balances untouched', async () => {
        const acct = await account(1_000n);
        const req = reservation(acct.id, 100n);
        assert.equal(await store.reserveCredits(req), true);
        const ledgerBefore = await store.listLedger(acct.id, ALL);
        await assert.rejects(store.reserveCredits({ ...req, amount: 200n }));
        assert.deepEqual(await balances(acct.id), { balance: 900n, held: 100n });
        assert.deepEqual(await store.listLedger(acct.id, ALL), ledgerBefore);
        assert.equal((await store.getRequest(req.requestId))?.hold, 100n);
      });
    });

    describe('settle and release', () => {
      it('settle with a partial cost returns the remainder to available', async () => {
        const acct = await account(1_000n);
        const req = reservation(acct.id, 400n);
        assert.equal(await store.reserveCredits(req), true);
        const before = Date.now();
        const detail = { basis: 'per_image', usage: { input_tokens: 12, output_tokens: 0 }, note: 'ünïcode ✓' };
        assert.equal(await store.settleReservation({ requestId: req.requestId, cost: 150n, upstreamCost: 120n, images: 2, detail }), true);
        assert.deepEqual(await balances(acct.id), { balance: 850n, held: 0n });

        const record = await store.getRequest(req.requestId);
        assert.ok(record);
        assert.equal(record.status, 'settled');
        assert.equal(record.hold, 400n);
        assert.equal(record.cost, 150n);
        assert.equal(record.upstreamCost, 120n);
        assert.equal(record.images, 2);
        assert.deepEqual(record.detail, detail);
        assert.ok(record.resolvedAt !== null && record.resolvedAt >= before - 1000 && record.resolvedAt <= Date.now() + 1000);

        const [entry] = await store.listLedger(acct.id, 1);
        assert.equal(entry.kind, 'settle');
        assert.equal(entry.availableDelta, 250n);
        assert.equal(entry.heldDelta, -400n);
        assert.equal(entry.requestId, req.requestId);
      });

      it('settle without upstream cost or detail stores nulls', async () => {
        const acct = await account(100n);
        const req = reservation(acct.id, 100n);
        await store.reserveCredits(req);
        assert.equal(await store.settleReservation({ requestId: req.requestId, cost: 100n, images: 1 }), true);
        const record = await store.getRequest(req.requestId);
        assert.equal(record?.upstreamCost, null);
        assert.equal(record?.detail, null);
        assert.equal(record?.cost, 100n);
        assert.deepEqual(await balances(acct.id), { balance: 0n, held: 0n });
      });

      it('a chat completion: endpoint chat.completions, no images, token detail; settled like any hold', async () => {
        const acct = await account(10_000n);
        const req = reservation(acct.id, 4_500n, { model: 'deepshi-echo', endpoint: 'chat.completions' });
        assert.equal(await store.reserveCredits(req), true);
        const detail = { basis: 'per token', prompt_tokens: 5, cached_tokens: 0, completion_tokens: 2, finish_reason: 'length' };
        assert.equal(await store.settleReservation({ requestId: req.requestId, cost: 1_300n, images: 0, detail }), true);
        const record = await store.getRequest(req.requestId);
        assert.equal(record?.endpoint, 'chat.completions');
        assert.equal(record?.images, 0);
        assert.equal(record?.cost, 1_300n);
        assert.deepEqual(record?.detail, detail);
        assert.deepEqual(await balances(acct.id), { balance: 8_700n, held: 0n });
      });

      it('a cost above the hold is clamped to the hold (never an extra charge)', async () => {
        const acct = await account(1_000n);
        const req = reservation(acct.id, 300n);
        await store.reserveCredits(req);
        assert.equal(await store.settleReservation({ requestId: req.requestId, cost: 10_000n, images: 1 }), true);
        assert.deepEqual(await balances(acct.id), { balance: 700n, held: 0n });
        assert.equal((await store.getRequest(req.requestId))?.cost, 300n);
        const [entry] = await store.listLedger(acct.id, 1);
        assert.deepEqual([entry.kind, entry.availableDelta, entry.heldDelta], ['settle', 0n, -300n]);
      });

      it('a negative cost is clamped to zero (never a refill)', async () => {
        const acct = await account(1_000n);
        const req = reservation(acct.id, 300n);
        await store.reserveCredits(req);
        assert.equal(await store.settleReservation({ requestId: req.requestId, cost: -50n, images: 0 }), true);
        assert.deepEqual(await balances(acct.id), { balance: 1_000n, held: 0n });
        assert.equal((await store.getRequest(req.requestId))?.cost, 0n);
      });

      it('release returns the whole hold and records the reason', async () => {
        const acct = await account(1_000n);
        const req = reservation(acct.id, 600n);
        await store.reserveCredits(req);
        assert.equal(await store.releaseReservation(req.requestId, 'upstream_error'), true);
        assert.deepEqual(await balances(acct.id), { balance: 1_000n, held: 0n });
        const record = await store.getRequest(req.requestId);
        assert.ok(record);
        assert.equal(record.status, 'released');
        assert.equal(record.cost, 0n);
        assert.equal(record.upstreamCost, null);
        assert.equal(record.images, 0);
        assert.deepEqual(record.detail, { reason: 'upstream_error' });
        assert.notEqual(record.resolvedAt, null);
        const [entry] = await store.listLedger(acct.id, 1);
        assert.deepEqual([entry.kind, entry.availableDelta, entry.heldDelta, entry.requestId], ['release', 600n, -600n, req.requestId]);
      });

      it('only the resolved hold moves: other holds on the account stay held', async () => {
        const acct = await account(1_000n);
        const a = reservation(acct.id, 200n);
        const b = reservation(acct.id, 300n);
        await store.reserveCredits(a);
        await store.reserveCredits(b);
        assert.equal(await store.settleReservation({ requestId: a.requestId, cost: 50n, images: 1 }), true);
        assert.deepEqual(await balances(acct.id), { balance: 650n, held: 300n });
        assert.equal((await store.getRequest(b.requestId))?.status, 'held');
        assert.equal(await store.releaseReservation(b.requestId, 'client_closed'), true);
        assert.deepEqual(await balances(acct.id), { balance: 950n, held: 0n });
      });
    });

    describe('exactly-once resolution', () => {
      for (const [first, second] of [
        ['settle', 'settle'],
        ['settle', 'release'],
        ['release', 'settle'],
        ['release', 'release'],
      ] as const) {
        it(`${first} then ${second}: the second returns false and changes nothing`, async () => {
          const acct = await account(1_000n);
          const req = reservation(acct.id, 400n);
          await store.reserveCredits(req);
          const resolve = (how: 'settle' | 'release', cost: Nanos) =>
            how === 'settle'
              ? store.settleReservation({ requestId: req.requestId, cost, images: 1, detail: { n: Number(cost) } })
              : store.releaseReservation(req.requestId, `reason ${cost}`);
          assert.equal(await resolve(first, 100n), true);
          const balancesAfterFirst = await balances(acct.id);
          const recordAfterFirst = await store.getRequest(req.requestId);
          const ledgerAfterFirst = await store.listLedger(acct.id, ALL);

          assert.equal(await resolve(second, 300n), false);
          assert.deepEqual(await balances(acct.id), balancesAfterFirst);
          assert.deepEqual(await store.getRequest(req.requestId), recordAfterFirst);
          assert.deepEqual(await store.listLedger(acct.id, ALL), ledgerAfterFirst);
        });
      }

      it('unknown request ids resolve to false', async () => {
        assert.equal(await store.settleReservation({ requestId: 'req_does_not_exist', cost: 1n, images: 1 }), false);
        assert.equal(await store.releaseReservation('req_does_not_exist', 'x'), false);
        assert.equal(await store.getRequest('req_does_not_exist'), undefined);
      });

      it('concurrent settles and releases of one hold: exactly one wins', async () => {
        const acct = await account(1_000n);
        const req = reservation(acct.id, 500n);
        await store.reserveCredits(req);
        const attempts = Array.from({ length: 24 }, (_, i) =>
          i % 2 === 0
            ? store.settleReservation({ requestId: req.requestId, cost: 100n, images: 1 })
            : store.releaseReservation(req.requestId, 'race'),
        );
        const results = await Promise.all(attempts);
        assert.equal(results.filter(Boolean).length, 1);
        const record = await store.getRequest(req.requestId);
        const expected = record?.status === 'settled' ? 900n : 1_000n;
        assert.deepEqual(await balances(acct.id), { balance: expected, held: 0n });
        const resolutions = (await store.listLedger(acct.id, ALL)).filter((e) => e.requestId === req.requestId && e.kind !== 'hold');
        assert.equal(resolutions.length, 1);
      });
    });

    describe('requests', () => {
      it('listExpiredReservations: held and strictly past expiry, oldest expiry first, limited', async () => {
        const acct = await account(1_000n);
        // Expiries far in the past (epoch 1970) so no other scenario's holds qualify for these `now` values.
        const r3000 = reservation(acct.id, 10n, { expiresAt: 3_000 });
        const r1000 = reservation(acct.id, 10n, { expiresAt: 1_000 });
        const r2000 = reservation(acct.id, 10n, { expiresAt: 2_000 });
        const r1500Settled = reservation(acct.id, 10n, { expiresAt: 1_500 });
        const r1200Released = reservation(acct.id, 10n, { expiresAt: 1_200 });
        for (const r of [r3000, r1000, r2000, r1500Settled, r1200Released]) assert.equal(await store.reserveCredits(r), true);
        await store.settleReservation({ requestId: r1500Settled.requestId, cost: 5n, images: 1 });
        await store.releaseReservation(r1200Released.requestId, 'x');

        assert.deepEqual(await store.listExpiredReservations(500, 10), []);
        assert.deepEqual(await store.listExpiredReservations(1_000, 10), [], 'expiry equal to now is not yet expired');
        assert.deepEqual(await store.listExpiredReservations(2_500, 10), [r1000.requestId, r2000.requestId]);
        assert.deepEqual(await store.listExpiredReservations(3_001, 10), [r1000.requestId, r2000.requestId, r3000.requestId]);
        assert.deepEqual(await store.listExpiredReservations(3_001, 2), [r1000.requestId, r2000.requestId]);

        const everything = await store.listExpiredReservations(Date.now() + 100 * HOUR, ALL);
        assert.ok([r1000, r2000, r3000].every((r) => everything.includes(r.requestId)));
        assert.ok(!everything.includes(r1500Settled.requestId) && !everything.includes(r1200Released.requestId));

        // The sweeper's path: release what expired; it is no longer listed.
        for (const id of await store.listExpiredReservations(3_001, 10)) assert.equal(await store.releaseReservation(id, 'expired'), true);
        assert.deepEqual(await store.listExpiredReservations(3_001, 10), []);
        assert.deepEqual(await balances(acct.id), { balance: 995n, held: 0n });
      });

      it("listRequests: one account's requests, newest first, limited", async () => {
        const acct = await account(1_000n);
        const other = await account(1_000n);
        // Ids deliberately sort opposite to creation time, so the order must come from created_at.
        const ids = ['req_z', 'req_y', 'req_x', 'req_w'].map((id) => `${id}_${randomUUID()}`);
        for (const id of ids) {
          assert.equal(await store.reserveCredits(reservation(acct.id, 10n, { requestId: id })), true);
          await sleep(3);
        }
        await store.reserveCredits(reservation(other.id, 10n));
        await store.settleReservation({ requestId: ids[1], cost: 1n, images: 1 });

        const listed = await store.listRequests(acct.id, 10);
        assert.deepEqual(
          listed.map((r) => r.id),
          [...ids].reverse(),
        );
        assert.ok(listed.every((r) => r.accountId === acct.id));
        assert.equal(listed.find((r) => r.id === ids[1])?.status, 'settled');
        assert.deepEqual(
          listed.find((r) => r.id === ids[2]),
          await store.getRequest(ids[2]),
        );
        assert.deepEqual(
          (await store.listRequests(acct.id, 2)).map((r) => r.id),
          [ids[3], ids[2]],
        );
        assert.deepEqual(await store.listRequests('acct_does_not_exist', 10), []);
      });

      it('listRequests breaks created_at ties by id, descending', async () => {
        const acct = await account(1_000n);
        const ids = Array.from({ length: 6 }, (_, i) => `req_tie_${i}_${randomUUID()}`);
        await Promise.all(ids.map((id) => store.reserveCredits(reservation(acct.id, 1n, { requestId: id }))));
        const listed = await store.listRequests(acct.id, 10);
        const expected = [...listed].sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
        assert.deepEqual(
          listed.map((r) => r.id),
          expected.map((r) => r.id),
        );
      });
    });

    describe('concurrency', () => {
      it('200 concurrent reservations of p against a balance of exactly 37·p: exactly 37 succeed', async () => {
        const p = 134_000_000n; // $0.134
        const k = 37;
        const acct = await account(p * BigInt(k));
        const inputs = Array.from({ length: 200 }, () => reservation(acct.id, p));
        const results = await Promise.all(inputs.map((input) => store.reserveCredits(input)));
        assert.equal(results.filter(Boolean).length, k);
        assert.deepEqual(await balances(acct.id), { balance: 0n, held: p * BigInt(k) });

        const won = inputs.filter((_, i) => results[i]);
        const lost = inputs.filter((_, i) => !results[i]);
        const requests = await store.listRequests(acct.id, ALL);
        assert.equal(requests.length, k);
        assert.deepEqual(new Set(requests.map((r) => r.id)), new Set(won.map((r) => r.requestId)));
        for (const r of lost.slice(0, 10)) assert.equal(await store.getRequest(r.requestId), undefined);
        const holds = (await store.listLedger(acct.id, ALL)).filter((e) => e.kind === 'hold');
        assert.equal(holds.length, k);

        // Resolve everything concurrently, each hold raced by a duplicate resolver; exactly one per hold wins.
        const costs = won.map((_, i) => (p * BigInt(i % 5)) / 4n); // 0, p/4, p/2, 3p/4, p
        const resolutions = await Promise.all(
          won.flatMap((r, i) => [
            i % 3 === 0
              ? store.releaseReservation(r.requestId, 'cancelled')
              : store.settleReservation({ requestId: r.requestId, cost: costs[i], images: 1 }),
            store.releaseReservation(r.requestId, 'duplicate'),
          ]),
        );
        assert.equal(resolutions.filter(Boolean).length, k);
        const final = await store.listRequests(acct.id, ALL);
        const spent = final.reduce((sum, r) => sum + r.cost, 0n);
        assert.ok(final.every((r) => r.status !== 'held'));
        assert.deepEqual(await balances(acct.id), { balance: p * BigInt(k) - spent, held: 0n });
      });

      it('concurrent reservations, credits and resolutions across accounts keep every ledger consistent', async () => {
        const accounts = await Promise.all([account(10_000n), account(10_000n), account(10_000n)]);
        const ops: Promise<unknown>[] = [];
        for (let i = 0; i < 90; i++) {
          const acct = accounts[i % accounts.length];
          const input = reservation(acct.id, BigInt(100 + (i % 7) * 50));
          ops.push(
            store
              .reserveCredits(input)
              .then((ok) =>
                ok
                  ? i % 2 === 0
                    ? store.settleReservation({ requestId: input.requestId, cost: BigInt(i * 3), images: 1 })
                    : store.releaseReservation(input.requestId, 'done')
                  : false,
              ),
          );
          if (i % 10 === 0) ops.push(store.addCredits(acct.id, 25n, 'concurrent top-up'));
        }
        await Promise.all(ops);
        for (const acct of accounts) assert.equal((await balances(acct.id)).held, 0n);
      });
    });

    jobStoreScenarios(
      () => store,
      (credits) => account(credits),
    );
  });
}

/** balance == Σ available_delta, held == Σ held_delta, and no prefix of the ledger (in id order) goes negative. */
export async function assertLedgerInvariant(store: Store, accountId: string): Promise<void> {
  const current = await store.getAccount(accountId);
  assert.ok(current, `account ${accountId} exists`);
  const entries = (await store.listLedger(accountId, ALL)).reverse();
  let available = 0n;
  let held = 0n;
  for (const entry of entries) {
    available += entry.availableDelta;
    held += entry.heldDelta;
    assert.ok(available >= 0n, `running available balance went negative at ledger entry ${entry.id}`);
    assert.ok(held >= 0n, `running held balance went negative at ledger entry ${entry.id}`);
  }
  assert.ok(current.balance >= 0n && current.held >= 0n, 'balances are never negative');
  assert.equal(current.balance, available, `balance of ${accountId} equals Σ available_delta`);
  assert.equal(current.held, held, `held of ${accountId} equals Σ held_delta`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
