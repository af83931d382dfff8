import { useState } from 'preact/hooks';
import { dashboardApi, withQuery, type Account, type LedgerEntry, type ListPage, type Overview } from '../api.ts';
import { ErrorNote, Field, Loading, PageHeader, Stat, useAccountScope, useAsync, useFormAction, useQueryState, value } from '../components.tsx';
import { usd } from '../format.ts';
import { LedgerTable } from '../ledger-table.tsx';

export function CreditsPage() {
  const { query: scope, accountId } = useAccountScope();
  const [query] = useQueryState();
  const overview = useAsync(() => dashboardApi.get<Overview>('/overview', scope), [accountId]);
  const ledger = useAsync(() => dashboardApi.get<ListPage<LedgerEntry>>('/ledger', { ...scope, limit: 50, before: query.before }), [accountId, query.before]);
  const [code, setCode] = useState('');
  const [redeemed, setRedeemed] = useState<{ amount: string; account: Account } | undefined>();

  const { submit: redeem, error, busy } = useFormAction(async () => {
    setRedeemed(undefined);
    const answer = await dashboardApi.post<{ account: Account; amount: string }>('/credit-codes/redeem', { code: code.trim() }, scope);
    setRedeemed(answer);
    setCode('');
    overview.reload();
    ledger.reload();
  });

  const account = redeemed?.account ?? overview.data?.account;
  const entries = ledger.data?.data ?? [];
  return (
    <section>
      <PageHeader title="Credits" />
      <ErrorNote error={overview.error} />
      {account ? (
        <div class="stats">
          <Stat label="Balance" value={usd(account.balance)} hint="Available to spend" testId="balance" />
          <Stat label="On hold" value={usd(account.held)} hint="Reserved by requests in progress" testId="held" />
        </div>
      ) : null}
      <form class="card stack" onSubmit={redeem} aria-labelledby="redeem-title">
        <h2 id="redeem-title">Redeem a top-up code</h2>
        <p class="muted small">Codes come from the operator of this server. The credit applies at once.</p>
        <div class="row">
          <Field label="Top-up code" class="field-wide">
            <input type="text" name="code" required autoComplete="off" spellcheck={false} placeholder="DSC-XXXX-XXXX-XXXX-XXXX" value={code} onInput={(event) => setCode(value(event))} />
          </Field>
          <button type="submit" disabled={busy}>
            {busy ? 'Redeeming…' : 'Redeem'}
          </button>
        </div>
        <ErrorNote error={error} />
        {redeemed ? (
          <p class="notice" role="status">
            Added {usd(redeemed.amount)}. The balance is now {usd(redeemed.account.balance)}.
          </p>
        ) : null}
      </form>
      <p class="muted small">Card payments are not available on this server: top-ups are by code.</p>
      <h2>Ledger</h2>
      <p class="muted small">Every change to the balance: credits, holds taken when a request starts, and what each request settled or released.</p>
      {ledger.loading && !ledger.data ? <Loading /> : null}
      <ErrorNote error={ledger.error} />
      {ledger.data ? (
        entries.length ? (
          <LedgerTable entries={entries} />
        ) : (
          <p class="muted">No entries yet.</p>
        )
      ) : null}
      <nav class="row" aria-label="Pages">
        {query.before ? (
          <a class="button secondary" href={withQuery(location.pathname, { ...query, before: null })}>
            Newest
          </a>
        ) : null}
        {ledger.data?.has_more && entries.length ? (
          <a class="button secondary" href={withQuery(location.pathname, { ...query, before: entries[entries.length - 1].id })}>
            Older →
          </a>
        ) : null}
      </nav>
    </section>
  );
}
