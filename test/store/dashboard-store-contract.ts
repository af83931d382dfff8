/**
 * The DashboardStore contract (src/store/dashboard-types.ts): users, sessions, playground keys, key last use, credit
 * codes, debits and the dashboard's queries. Every store runs exactly this suite (test/store/sqlite-store.test.ts,
 * test/store/postgres-store.test.ts); money scenarios end with the ledger invariant.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Store } from '../../src/store/types.ts';
import { assertLedgerInvariant } from './store-contract.ts';

const HOUR = 3_600_000;
const DAY = 86_400_000;

export function runDashboardStoreContract(name: string, open: () => Promise<Store>): void {
  describe(`DashboardStore contract: ${name}`, () => {
    let store: Store;
    before(async () => {
      store = await open();
    });
    after(async () => {
      await store?.close();
    });
    const uid = (prefix: string) => `${prefix}_${randomUUID().replace(/-/g, '').slice(0, 20)}`;
    const email = () => `${uid('u')}@example.com`;
    const newKey = (accountId: string) => ({ id: uid('key'), accountId, name: 'k', models: null, hash: uid('hash'), display: 'sk-bf-x…y' });

    describe('users', () => {
      it('createUser stores the hash and role; a second user with the same email is refused', async () => {
        const account = await store.createAccount({ name: 'u', credits: 0n });
        const address = email();
        const user = await store.dashboard.createUser({
          id: uid('user'),
          email: address,
          passwordHash: 'scrypt$h',
          role: 'member',
          accountId: account.id,
        });
        assert.ok(user);
        assert.deepEqual([user.email, user.passwordHash, user.role, user.accountId], [address, 'scrypt$h', 'member', account.id]);
        assert.equal(
          await store.dashboard.createUser({ id: uid('user'), email: address, passwordHash: 'x', role: 'member', accountId: account.id }),
          undefined,
        );
        assert.equal((await store.dashboard.findUserByEmail(address))?.id, user.id);
        assert.equal((await store.dashboard.getUser(user.id))?.email, address);
        assert.deepEqual(
          (await store.dashboard.listUsers(account.id)).map((u) => u.id),
          [user.id],
        );
      });

      it('an operator may belong to no account; a member may not', async () => {
        const operator = await store.dashboard.createUser({
          id: uid('user'),
          email: email(),
          passwordHash: 'h',
          role: 'operator',
          accountId: null,
        });
        assert.equal(operator?.accountId, null);
        await assert.rejects(
          store.dashboard.createUser({ id: uid('user'), email: email(), passwordHash: 'h', role: 'member', accountId: null }),
        );
      });

      it('createAccountWithUser makes both with the opening credit, or neither when the email is taken', async () => {
        const address = email();
        const created = await store.dashboard.createAccountWithUser({
          accountName: address,
          credits: 2_000_000_000n,
          note: 'sign-up credit',
          user: { id: uid('user'), email: address, passwordHash: 'h' },
        });
        assert.ok(created);
        assert.equal(created.account.balance, 2_000_000_000n);
        assert.equal(created.user.accountId, created.account.id);
        assert.equal(created.user.role, 'member');
        await assertLedgerInvariant(store, created.account.id);
        const before = (await store.listAccounts()).length;
        assert.equal(
          await store.dashboard.createAccountWithUser({
            accountName: 'again',
            credits: 5n,
            note: 'n',
            user: { id: uid('user'), email: address, passwordHash: 'h' },
          }),
          undefined,
        );
        assert.equal((await store.listAccounts()).length, before, 'no orphan account');
      });
    });

    describe('sessions and playground keys', () => {
      async function member() {
        const account = await store.createAccount({ name: 's', credits: 0n });
        const user = (await store.dashboard.createUser({
          id: uid('user'),
          email: email(),
          passwordHash: 'old',
          role: 'member',
          accountId: account.id,
        }))!;
        return { account, user };
      }

      it('a session is found by its digest until it expires, with its user; deleting it ends it', async () => {
        const { user } = await member();
        const hash = uid('sess');
        const now = Date.now();
        await store.dashboard.createSession({ tokenHash: hash, userId: user.id, role: 'member', credential: null, expiresAt: now + HOUR });
        const found = await store.dashboard.getSession(hash, now);
        assert.equal(found?.user?.id, user.id);
        assert.equal(found?.role, 'member');
        assert.equal(await store.dashboard.getSession(hash, now + HOUR), undefined, 'expired');
        assert.equal(await store.dashboard.deleteSession(hash), true);
        assert.equal(await store.dashboard.getSession(hash, now), undefined);
        assert.equal(await store.dashboard.deleteSession(hash), false);
      });

      it('an admin-token session has no user and keeps its credential', async () => {
        const hash = uid('sess');
        await store.dashboard.createSession({
          tokenHash: hash,
          userId: null,
          role: 'operator',
          credential: 'abc123',
          expiresAt: Date.now() + HOUR,
        });
        const found = await store.dashboard.getSession(hash, Date.now());
        assert.deepEqual([found?.user, found?.role, found?.credential], [null, 'operator', 'abc123']);
      });

      it('a playground key authenticates until it expires, is never listed, and dies with its session', async () => {
        const { account, user } = await member();
        const session = uid('sess');
        await store.dashboard.createSession({
          tokenHash: session,
          userId: user.id,
          role: 'member',
          credential: null,
          expiresAt: Date.now() + HOUR,
        });
        const regular = await store.createApiKey(newKey(account.id));
        const play = newKey(account.id);
        await store.dashboard.createPlaygroundKey({ ...play, sessionHash: session, expiresAt: Date.now() + HOUR });
        assert.equal((await store.findApiKeyByHash(play.hash))?.id, play.id);
        assert.deepEqual(
          (await store.listApiKeys(account.id)).map((key) => key.id),
          [regular.id],
        );
        await store.dashboard.deleteSession(session);
        assert.equal(await store.findApiKeyByHash(play.hash), undefined);

        const expired = newKey(account.id);
        await store.dashboard.createPlaygroundKey({ ...expired, sessionHash: uid('sess'), expiresAt: Date.now() - 1 });
        assert.equal(await store.findApiKeyByHash(expired.hash), undefined, 'an expired playground key never matches');
      });

      it('setUserPassword replaces the hash and deletes every other session of the user with its playground keys', async () => {
        const { account, user } = await member();
        const keep = uid('sess');
        const other = uid('sess');
        for (const hash of [keep, other])
          await store.dashboard.createSession({
            tokenHash: hash,
            userId: user.id,
            role: 'member',
            credential: null,
            expiresAt: Date.now() + HOUR,
          });
        const play = newKey(account.id);
        await store.dashboard.createPlaygroundKey({ ...play, sessionHash: other, expiresAt: Date.now() + HOUR });
        assert.equal(await store.dashboard.setUserPassword(user.id, 'new', keep), true);
        assert.equal((await store.dashboard.getUser(user.id))?.passwordHash, 'new');
        assert.ok(await store.dashboard.getSession(keep, Date.now()));
        assert.equal(await store.dashboard.getSession(other, Date.now()), undefined);
        assert.equal(await store.findApiKeyByHash(play.hash), undefined);
        assert.equal(await store.dashboard.setUserPassword(user.id, 'newer', null), true);
        assert.equal(await store.dashboard.getSession(keep, Date.now()), undefined, 'null keeps none');
        assert.equal(await store.dashboard.setUserPassword('user_nope', 'x', null), false);
      });

      it('deleteExpiredSessions removes only expired sessions', async () => {
        const { user } = await member();
        const old = uid('sess');
        const live = uid('sess');
        await store.dashboard.createSession({
          tokenHash: old,
          userId: user.id,
          role: 'member',
          credential: null,
          expiresAt: Date.now() - 1000,
        });
        await store.dashboard.createSession({
          tokenHash: live,
          userId: user.id,
          role: 'member',
          credential: null,
          expiresAt: Date.now() + HOUR,
        });
        assert.ok((await store.dashboard.deleteExpiredSessions(Date.now(), 500)) >= 1);
        assert.equal(await store.dashboard.deleteSession(old), false);
        assert.ok(await store.dashboard.getSession(live, Date.now()));
      });
    });

    describe('key last use', () => {
      it('noteKeyUse writes last_used_at behind the request, at most once a minute per key', async () => {
        const account = await store.createAccount({ name: 'lu', credits: 0n });
        const key = await store.createApiKey(newKey(account.id));
        assert.equal(key.lastUsedAt, null);
        const t0 = Date.now();
        store.dashboard.noteKeyUse(key.id, t0);
        const written = await eventually(async () => (await store.getApiKey(key.id))?.lastUsedAt ?? null);
        assert.equal(written, t0);
        store.dashboard.noteKeyUse(key.id, t0 + 30_000);
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal((await store.getApiKey(key.id))?.lastUsedAt, t0, 'not rewritten within the minute');
        store.dashboard.noteKeyUse(key.id, t0 + 61_000);
        assert.equal(
          await eventually(async () => ((await store.getApiKey(key.id))?.lastUsedAt === t0 + 61_000 ? t0 + 61_000 : null)),
          t0 + 61_000,
        );
      });

      it('authenticating by hash notes the use', async () => {
        const account = await store.createAccount({ name: 'lu2', credits: 0n });
        const input = newKey(account.id);
        await store.createApiKey(input);
        await store.findApiKeyByHash(input.hash);
        assert.ok((await eventually(async () => (await store.getApiKey(input.id))?.lastUsedAt ?? null))! > 0);
      });
    });

    describe('credit codes and debits', () => {
      it('a code is redeemed once, with one credit entry; a second redemption and an unknown code are told apart', async () => {
        const account = await store.createAccount({ name: 'cc', credits: 0n });
        const hash = uid('h');
        const [code] = await store.dashboard.createCreditCodes([
          { id: uid('code'), hash, prefix: 'DSC-ABCD', amount: 7_000_000_000n, note: 'promo' },
        ]);
        assert.deepEqual([code.prefix, code.amount, code.redeemedAt], ['DSC-ABCD', 7_000_000_000n, null]);
        const first = await store.dashboard.redeemCreditCode({ hash, accountId: account.id, note: 'credit code' });
        assert.equal(first.outcome, 'redeemed');
        assert.equal(first.outcome === 'redeemed' && first.account.balance, 7_000_000_000n);
        assert.equal(
          (await store.dashboard.redeemCreditCode({ hash, accountId: account.id, note: 'credit code' })).outcome,
          'already_redeemed',
        );
        assert.equal(
          (await store.dashboard.redeemCreditCode({ hash: 'nope', accountId: account.id, note: 'credit code' })).outcome,
          'unknown',
        );
        const [listed] = (await store.dashboard.listCreditCodes(1000)).filter((c) => c.id === code.id);
        assert.equal(listed.redeemedBy, account.id);
        assert.ok(listed.redeemedAt);
        const ledger = await store.listLedger(account.id, 10);
        assert.equal(ledger.length, 1);
        assert.match(ledger[0].note ?? '', /DSC-ABCD/);
        await assertLedgerInvariant(store, account.id);
      });

      it('50 concurrent redemptions of one code by 5 accounts credit exactly one of them, once', async () => {
        const accounts = await Promise.all(Array.from({ length: 5 }, () => store.createAccount({ name: 'race', credits: 0n })));
        const hash = uid('h');
        await store.dashboard.createCreditCodes([{ id: uid('code'), hash, prefix: 'DSC-RACE', amount: 1_000n, note: null }]);
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => store.dashboard.redeemCreditCode({ hash, accountId: accounts[i % 5].id, note: 'c' })),
        );
        assert.equal(results.filter((r) => r.outcome === 'redeemed').length, 1);
        assert.equal(results.filter((r) => r.outcome === 'already_redeemed').length, 49);
        let total = 0n;
        for (const account of accounts) {
          total += (await store.getAccount(account.id))!.balance;
          await assertLedgerInvariant(store, account.id);
        }
        assert.equal(total, 1_000n);
      });

      it('a redemption for an unknown account claims nothing', async () => {
        const hash = uid('h');
        await store.dashboard.createCreditCodes([{ id: uid('code'), hash, prefix: 'DSC-NONE', amount: 5n, note: null }]);
        assert.equal((await store.dashboard.redeemCreditCode({ hash, accountId: 'acct_nope', note: 'c' })).outcome, 'unknown');
        const account = await store.createAccount({ name: 'later', credits: 0n });
        assert.equal((await store.dashboard.redeemCreditCode({ hash, accountId: account.id, note: 'c' })).outcome, 'redeemed');
      });

      it('debitAccount takes from the available balance only when it covers it', async () => {
        const account = await store.createAccount({ name: 'debit', credits: 100n });
        const debited = await store.dashboard.debitAccount(account.id, 60n, 'refund reversal');
        assert.equal(debited.outcome === 'debited' && debited.account.balance, 40n);
        assert.equal((await store.dashboard.debitAccount(account.id, 41n, null)).outcome, 'insufficient');
        assert.equal((await store.dashboard.debitAccount('acct_nope', 1n, null)).outcome, 'unknown');
        const [entry] = await store.listLedger(account.id, 1);
        assert.deepEqual([entry.kind, entry.availableDelta, entry.note], ['adjustment', -60n, 'refund reversal']);
        await assertLedgerInvariant(store, account.id);
      });

      it('concurrent debits never take the balance below zero', async () => {
        const account = await store.createAccount({ name: 'debit-race', credits: 10n });
        const results = await Promise.all(Array.from({ length: 25 }, () => store.dashboard.debitAccount(account.id, 1n, null)));
        assert.equal(results.filter((r) => r.outcome === 'debited').length, 10);
        assert.equal((await store.getAccount(account.id))!.balance, 0n);
        await assertLedgerInvariant(store, account.id);
      });
    });

    describe('queries', () => {
      it('searchAccounts matches id, name and a user email, case-insensitively', async () => {
        const tag = uid('Find').toLowerCase();
        const byName = await store.createAccount({ name: `Acme ${tag.toUpperCase()}`, credits: 0n });
        const byEmail = await store.createAccount({ name: 'other', credits: 0n });
        await store.dashboard.createUser({
          id: uid('user'),
          email: `${tag}@corp.example`,
          passwordHash: 'h',
          role: 'member',
          accountId: byEmail.id,
        });
        const found = await store.dashboard.searchAccounts(tag, 10);
        assert.deepEqual(new Set(found.map((a) => a.id)), new Set([byName.id, byEmail.id]));
        assert.deepEqual(
          (await store.dashboard.searchAccounts(byName.id.toUpperCase(), 10)).map((a) => a.id),
          [byName.id],
        );
      });

      it('spend and daily spend count settled costs by UTC day and model; usage filters and pages by keyset', async () => {
        const account = await store.createAccount({ name: 'q', credits: 1_000_000n });
        const ids: string[] = [];
        const settle = async (model: string, keyId: string, cost: bigint, endpoint = 'images.generations') => {
          const requestId = uid('req');
          ids.push(requestId);
          assert.ok(
            await store.reserveCredits({
              requestId,
              accountId: account.id,
              keyId,
              model,
              endpoint,
              amount: cost + 10n,
              expiresAt: Date.now() + HOUR,
            }),
          );
          assert.ok(await store.settleReservation({ requestId, cost, images: 1 }));
          return requestId;
        };
        await settle('m-a', 'key_1', 100n);
        await settle('m-a', 'key_2', 50n);
        await settle('m-b', 'key_1', 7n, 'chat.completions');
        const released = uid('req');
        assert.ok(
          await store.reserveCredits({
            requestId: released,
            accountId: account.id,
            keyId: 'key_1',
            model: 'm-a',
            endpoint: 'images.generations',
            amount: 99n,
            expiresAt: Date.now() + HOUR,
          }),
        );
        assert.ok(await store.releaseReservation(released, 'failed'));

        const today = Math.floor(Date.now() / DAY) * DAY;
        const spend = await store.dashboard.spendSince(account.id, { today, week: today - 6 * DAY, month: today - 29 * DAY });
        assert.deepEqual(spend, { today: 157n, last7Days: 157n, last30Days: 157n });
        const tomorrow = today + DAY;
        assert.deepEqual(await store.dashboard.spendSince(account.id, { today: tomorrow, week: tomorrow, month: today }), {
          today: 0n,
          last7Days: 0n,
          last30Days: 157n,
        });
        assert.deepEqual(await store.dashboard.dailySpend(account.id, today - 29 * DAY), [
          { day: today / DAY, model: 'm-a', cost: 150n },
          { day: today / DAY, model: 'm-b', cost: 7n },
        ]);

        const all = await store.dashboard.queryUsage({ accountId: account.id, limit: 10 });
        assert.equal(all.length, 4);
        assert.deepEqual(
          (await store.dashboard.queryUsage({ accountId: account.id, keyId: 'key_1', status: 'settled', limit: 10 }))
            .map((r) => r.cost)
            .sort(),
          [100n, 7n],
        );
        assert.deepEqual(
          (await store.dashboard.queryUsage({ accountId: account.id, endpoint: 'chat.completions', limit: 10 })).map((r) => r.model),
          ['m-b'],
        );
        assert.deepEqual(
          (await store.dashboard.queryUsage({ accountId: account.id, model: 'm-a', status: 'released', limit: 10 })).map((r) => r.id),
          [released],
        );
        assert.equal((await store.dashboard.queryUsage({ accountId: account.id, from: Date.now() + HOUR, limit: 10 })).length, 0);
        assert.equal((await store.dashboard.queryUsage({ accountId: account.id, to: 0, limit: 10 })).length, 0);
        // Paging by (created_at, id) visits every row once, in the listing order.
        const seen: string[] = [];
        let cursor: { createdAt: number; id: string } | undefined;
        for (;;) {
          const page = await store.dashboard.queryUsage({ accountId: account.id, before: cursor, limit: 1 });
          if (page.length === 0) break;
          seen.push(page[0].id);
          cursor = { createdAt: page[0].createdAt, id: page[0].id };
        }
        assert.deepEqual(
          seen,
          all.map((r) => r.id),
        );
        assert.equal((await store.dashboard.queryUsage({ accountId: 'acct_other', limit: 10 })).length, 0);
      });

      it('modelMargins: per model, every account, settled only, since an instant; charged vs upstream, exact', async () => {
        const big = 2n ** 53n + 1n; // beyond a double's exact integers
        const accounts = [
          await store.createAccount({ name: 'm1', credits: 3n * big }),
          await store.createAccount({ name: 'm2', credits: 1000n }),
        ];
        const [a, b, c] = [uid('m-a'), uid('m-b'), uid('m-c')];
        const settle = async (accountId: string, model: string, cost: bigint, upstreamCost?: bigint) => {
          const requestId = uid('req');
          const reservation = { requestId, accountId, keyId: 'key_m', model, endpoint: 'images.generations', expiresAt: Date.now() + HOUR };
          assert.ok(await store.reserveCredits({ ...reservation, amount: cost + 1n }));
          assert.ok(await store.settleReservation({ requestId, cost, upstreamCost, images: 1 }));
          return (await store.getRequest(requestId))!;
        };
        const first = await settle(accounts[0].id, a, 100n, 60n);
        await settle(accounts[1].id, a, 50n); // upstream bill unknown
        await settle(accounts[1].id, a, 30n, 45n); // the upstream billed more than the caller paid
        await settle(accounts[0].id, b, 7n);
        await settle(accounts[0].id, c, big, big + 2n);
        // Neither a hold still open nor a released one counts.
        const open = { accountId: accounts[1].id, keyId: 'key_m', model: a, endpoint: 'images.generations', expiresAt: Date.now() + HOUR };
        assert.ok(await store.reserveCredits({ ...open, requestId: uid('req'), amount: 5n }));
        const released = uid('req');
        assert.ok(await store.reserveCredits({ ...open, requestId: released, amount: 5n }));
        assert.ok(await store.releaseReservation(released, 'failed'));

        const mine = async (since: number) => (await store.dashboard.modelMargins(since)).filter((m) => [a, b, c].includes(m.model));
        assert.deepEqual(await mine(first.createdAt), [
          { model: c, requests: 1, charged: big, requestsWithUpstreamCost: 1, chargedWithUpstreamCost: big, upstreamCost: big + 2n },
          { model: a, requests: 3, charged: 180n, requestsWithUpstreamCost: 2, chargedWithUpstreamCost: 130n, upstreamCost: 105n },
          { model: b, requests: 1, charged: 7n, requestsWithUpstreamCost: 0, chargedWithUpstreamCost: 0n, upstreamCost: 0n },
        ]);
        assert.deepEqual(await mine(Date.now() + HOUR), []);

        // `since` is inclusive, by the request's creation time.
        while (Date.now() <= first.createdAt + 1) await new Promise((resolve) => setTimeout(resolve, 2));
        const later = await settle(accounts[0].id, a, 11n, 3n);
        assert.ok(later.createdAt > first.createdAt + 1);
        assert.deepEqual(await mine(later.createdAt), [
          { model: a, requests: 1, charged: 11n, requestsWithUpstreamCost: 1, chargedWithUpstreamCost: 11n, upstreamCost: 3n },
        ]);
        for (const account of accounts) await assertLedgerInvariant(store, account.id);
      });

      it('listLedgerPage pages by id, newest first', async () => {
        const account = await store.createAccount({ name: 'lp', credits: 1n });
        for (let i = 0; i < 4; i++) await store.addCredits(account.id, 1n, `c${i}`);
        const first = await store.dashboard.listLedgerPage(account.id, 2, null);
        assert.deepEqual(
          first.map((e) => e.note),
          ['c3', 'c2'],
        );
        const second = await store.dashboard.listLedgerPage(account.id, 10, first[1].id);
        assert.deepEqual(
          second.map((e) => e.note),
          ['c1', 'c0', 'initial credit'],
        );
      });
    });
  });
}

async function eventually<T>(read: () => Promise<T | null>, timeoutMs = 5000): Promise<T | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (value !== null || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
