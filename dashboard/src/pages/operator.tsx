import { useEffect, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { adminApi, type Account, type LedgerEntry, type ListPage, type User } from '../api.ts';
import { CopyButton, ErrorNote, Field, Loading, PageHeader, Stat, useAsync, useFormAction, useQueryState, value } from '../components.tsx';
import { time, usd } from '../format.ts';
import { LedgerTable } from '../ledger-table.tsx';
import { MarginsSection } from './operator-margins.tsx';

// The operator console: the /admin/v1 API with the operator's session cookie (docs/dashboard.md).

const SECTIONS: [string, string][] = [
  ['/operator', 'Accounts'],
  ['/operator/users', 'Users'],
  ['/operator/codes', 'Top-up codes'],
  ['/operator/models', 'Models'],
  ['/operator/margins', 'Margins'],
  ['/operator/service', 'Service'],
];

export function OperatorPage() {
  const { path } = useLocation();
  const account = /^\/operator\/accounts\/([^/]+)$/.exec(path);
  return (
    <section>
      <nav class="tabs" aria-label="Operator console">
        {SECTIONS.map(([href, label]) => (
          <a
            key={href}
            href={href}
            class="button secondary small"
            aria-current={(href === '/operator' ? path === href || Boolean(account) : path.startsWith(href)) ? 'page' : undefined}
          >
            {label}
          </a>
        ))}
      </nav>
      {account ? (
        <AccountDetail id={decodeURIComponent(account[1])} />
      ) : path.startsWith('/operator/users') ? (
        <UsersSection />
      ) : path.startsWith('/operator/codes') ? (
        <CodesSection />
      ) : path.startsWith('/operator/models') ? (
        <ModelsSection />
      ) : path.startsWith('/operator/margins') ? (
        <MarginsSection />
      ) : path.startsWith('/operator/service') ? (
        <ServiceSection />
      ) : (
        <AccountsSection />
      )}
    </section>
  );
}

function AccountsSection() {
  const [query, setQuery] = useQueryState();
  const location = useLocation();
  const accounts = useAsync(() => adminApi.get<ListPage<Account>>('/accounts', { q: query.q, limit: 100 }), [query.q]);
  const [search, setSearch] = useState(query.q ?? '');
  const [name, setName] = useState('');
  const [credits, setCredits] = useState('');

  const { submit: create, error } = useFormAction(async () => {
    const account = await adminApi.post<Account>('/accounts', { name, ...(credits ? { credits } : {}) });
    location.route(`/operator/accounts/${encodeURIComponent(account.id)}`);
  });

  return (
    <>
      <PageHeader title="Accounts" />
      <div class="grid-2">
        <form
          class="card stack"
          role="search"
          onSubmit={(event) => {
            event.preventDefault();
            setQuery({ q: search });
          }}
        >
          <h2>Find an account</h2>
          <div class="row">
            <Field label="Search by id, name or user email">
              <input type="search" value={search} onInput={(event) => setSearch(value(event))} />
            </Field>
            <button type="submit">Search</button>
          </div>
        </form>
        <form class="card stack" onSubmit={create} aria-labelledby="create-account-title">
          <h2 id="create-account-title">Create an account</h2>
          <div class="row">
            <Field label="Account name">
              <input type="text" required value={name} onInput={(event) => setName(value(event))} />
            </Field>
            <Field label="Opening credit (USD)">
              <input type="text" inputMode="decimal" placeholder="0" value={credits} onInput={(event) => setCredits(value(event))} />
            </Field>
            <button type="submit">Create account</button>
          </div>
          <ErrorNote error={error} />
        </form>
      </div>
      {accounts.loading && !accounts.data ? <Loading /> : null}
      <ErrorNote error={accounts.error} />
      {accounts.data ? (
        <div class="table-wrap">
          <table data-testid="accounts-table">
            <thead>
              <tr>
                <th scope="col">Account</th>
                <th scope="col">Id</th>
                <th scope="col" class="num">
                  Balance
                </th>
                <th scope="col" class="num">
                  On hold
                </th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {accounts.data.data.map((account) => (
                <tr key={account.id}>
                  <td>
                    <a href={`/operator/accounts/${encodeURIComponent(account.id)}`}>{account.name}</a>
                  </td>
                  <td class="mono small">{account.id}</td>
                  <td class="num">{usd(account.balance)}</td>
                  <td class="num">{usd(account.held)}</td>
                  <td>{time(account.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {accounts.data.data.length === 0 ? <p class="muted">No account matches.</p> : null}
        </div>
      ) : null}
    </>
  );
}

function AccountDetail({ id }: { id: string }) {
  const account = useAsync(() => adminApi.get<Account & { keys: unknown[] }>(`/accounts/${encodeURIComponent(id)}`), [id]);
  const ledger = useAsync(() => adminApi.get<ListPage<LedgerEntry>>(`/accounts/${encodeURIComponent(id)}/ledger`, { limit: 100 }), [id]);
  const users = useAsync(() => adminApi.get<ListPage<User & { created_at: number }>>('/users', { account_id: id }), [id]);
  const [direction, setDirection] = useState<'credit' | 'debit'>('credit');
  const [amount, setAmount] = useState('');
  const [note, setNote] = useState('');
  const [done, setDone] = useState<string | undefined>();

  const { submit: adjust, error } = useFormAction(async () => {
    setDone(undefined);
    const updated = await adminApi.post<Account>(`/accounts/${encodeURIComponent(id)}/${direction === 'credit' ? 'credits' : 'debits'}`, { amount, ...(note ? { note } : {}) });
    setDone(`${direction === 'credit' ? 'Added' : 'Took'} ${usd(amount)}. The balance is now ${usd(updated.balance)}.`);
    setAmount('');
    setNote('');
    account.reload();
    ledger.reload();
  });

  const scoped = (path: string) => `${path}?account_id=${encodeURIComponent(id)}`;
  return (
    <>
      <PageHeader title={account.data ? `Account: ${account.data.name}` : 'Account'}>
        <a class="button secondary" href={scoped('/overview')}>
          Overview
        </a>
        <a class="button secondary" href={scoped('/keys')}>
          Keys
        </a>
        <a class="button secondary" href={scoped('/usage')}>
          Usage
        </a>
        <a class="button secondary" href={scoped('/playground')}>
          Playground
        </a>
      </PageHeader>
      <ErrorNote error={account.error} />
      {account.data ? (
        <div class="stats">
          <Stat label="Balance" value={usd(account.data.balance)} testId="balance" />
          <Stat label="On hold" value={usd(account.data.held)} testId="held" />
          <Stat label="Keys" value={String(account.data.keys?.length ?? 0)} />
          <Stat label="Id" value={<span class="mono small">{account.data.id}</span>} />
        </div>
      ) : null}
      <div class="grid-2">
        <form class="card stack" onSubmit={adjust} aria-labelledby="adjust-title">
          <h2 id="adjust-title">Credit or debit</h2>
          <fieldset>
            <legend>Direction</legend>
            <div class="checks">
              <label>
                <input type="radio" name="direction" checked={direction === 'credit'} onChange={() => setDirection('credit')} /> Credit (add)
              </label>
              <label>
                <input type="radio" name="direction" checked={direction === 'debit'} onChange={() => setDirection('debit')} /> Debit (take)
              </label>
            </div>
          </fieldset>
          <div class="row">
            <Field label="Amount (USD)">
              <input type="text" inputMode="decimal" required placeholder="10.00" value={amount} onInput={(event) => setAmount(value(event))} />
            </Field>
            <Field label="Note">
              <input type="text" maxLength={500} placeholder="why (kept in the ledger)" value={note} onInput={(event) => setNote(value(event))} />
            </Field>
          </div>
          <ErrorNote error={error} />
          {done ? (
            <p class="notice" role="status">
              {done}
            </p>
          ) : null}
          <div>
            <button type="submit">{direction === 'credit' ? 'Add credit' : 'Debit'}</button>
          </div>
        </form>
        <UsersOfAccount accountId={id} users={users.data?.data} error={users.error} onCreated={users.reload} />
      </div>
      <h2>Ledger</h2>
      <ErrorNote error={ledger.error} />
      {ledger.data ? <LedgerTable entries={ledger.data.data} /> : null}
    </>
  );
}

function UsersOfAccount({ accountId, users, error, onCreated }: { accountId?: string; users?: (User & { created_at?: number })[]; error: unknown; onCreated: () => void }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState<'member' | 'operator'>('member');
  const [account, setAccount] = useState(accountId ?? '');

  const { submit: create, error: createError } = useFormAction(async () => {
    await adminApi.post('/users', { email, password, role, ...(account ? { account_id: account } : {}) });
    setEmail('');
    setPassword('');
    onCreated();
  });

  return (
    <section class="card stack" aria-labelledby="users-title">
      <h2 id="users-title">Users</h2>
      <ErrorNote error={error} />
      {users ? (
        users.length ? (
          <ul>
            {users.map((user) => (
              <li key={user.id}>
                {user.email ?? user.id} <span class="muted small">({user.role})</span>
                {!accountId && user.account_id ? (
                  <>
                    {' '}
                    — <a href={`/operator/accounts/${encodeURIComponent(user.account_id)}`}>{user.account_id}</a>
                  </>
                ) : null}
              </li>
            ))}
          </ul>
        ) : (
          <p class="muted">No users yet.</p>
        )
      ) : null}
      <form class="stack" onSubmit={create}>
        <h3>Add a user</h3>
        <div class="row">
          <Field label="Email">
            <input type="email" required value={email} onInput={(event) => setEmail(value(event))} />
          </Field>
          <Field label="Password" hint="10 characters or more; tell the person to change it.">
            <input type="password" required minLength={10} autoComplete="new-password" value={password} onInput={(event) => setPassword(value(event))} />
          </Field>
        </div>
        <div class="row">
          <Field label="Role">
            <select value={role} onChange={(event) => setRole(value(event) as 'member' | 'operator')}>
              <option value="member">member</option>
              <option value="operator">operator</option>
            </select>
          </Field>
          {accountId === undefined ? (
            <Field label="Account id" hint="Required for members.">
              <input type="text" value={account} onInput={(event) => setAccount(value(event))} />
            </Field>
          ) : null}
          <button type="submit">Add user</button>
        </div>
        <ErrorNote error={createError} />
      </form>
    </section>
  );
}

function UsersSection() {
  const users = useAsync(() => adminApi.get<ListPage<User & { created_at: number }>>('/users'), []);
  return (
    <>
      <PageHeader title="Users" />
      <UsersOfAccount users={users.data?.data} error={users.error} onCreated={users.reload} />
    </>
  );
}

interface IssuedCode {
  id: string;
  code?: string;
  code_prefix?: string;
  amount: string;
  note: string | null;
  created_at: number;
  redeemed_at?: number | null;
  redeemed_by?: string | null;
}

function CodesSection() {
  const codes = useAsync(() => adminApi.get<ListPage<IssuedCode>>('/credit-codes', { limit: 200 }), []);
  const [amount, setAmount] = useState('');
  const [count, setCount] = useState('1');
  const [note, setNote] = useState('');
  const [issued, setIssued] = useState<IssuedCode[] | undefined>();

  const { submit: create, error } = useFormAction(async () => {
    const answer = await adminApi.post<ListPage<IssuedCode>>('/credit-codes', { amount, count: Number(count), ...(note ? { note } : {}) });
    setIssued(answer.data);
    codes.reload();
  });

  return (
    <>
      <PageHeader title="Top-up codes" />
      <form class="card stack" onSubmit={create} aria-labelledby="codes-title">
        <h2 id="codes-title">Create codes</h2>
        <p class="muted small">Each code is single-use and credits its amount to the account that redeems it (Credits page).</p>
        <div class="row">
          <Field label="Amount per code (USD)">
            <input type="text" inputMode="decimal" required placeholder="10" value={amount} onInput={(event) => setAmount(value(event))} />
          </Field>
          <Field label="How many">
            <input type="number" min={1} max={1000} required value={count} onInput={(event) => setCount(value(event))} />
          </Field>
          <Field label="Note">
            <input type="text" maxLength={500} value={note} onInput={(event) => setNote(value(event))} />
          </Field>
          <button type="submit">Create codes</button>
        </div>
        <ErrorNote error={error} />
      </form>
      {issued ? (
        <div class="card notice" role="status" data-testid="issued-codes">
          <h2>New codes</h2>
          <p>Copy them now: they are stored hashed and will not be shown again.</p>
          <pre data-testid="codes-value">{issued.map((code) => code.code).join('\n')}</pre>
          <div class="row">
            <CopyButton text={issued.map((code) => code.code).join('\n')} label="Copy codes" />
            <button type="button" class="secondary" onClick={() => setIssued(undefined)}>
              Done
            </button>
          </div>
        </div>
      ) : null}
      <h2>Issued codes</h2>
      <ErrorNote error={codes.error} />
      {codes.data ? (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Code</th>
                <th scope="col" class="num">
                  Amount
                </th>
                <th scope="col">Note</th>
                <th scope="col">Created</th>
                <th scope="col">Redeemed</th>
              </tr>
            </thead>
            <tbody>
              {codes.data.data.map((code) => (
                <tr key={code.id}>
                  <td class="mono small">{code.code_prefix}…</td>
                  <td class="num">{usd(code.amount)}</td>
                  <td>{code.note ?? ''}</td>
                  <td>{time(code.created_at)}</td>
                  <td>
                    {code.redeemed_at ? (
                      <>
                        {time(code.redeemed_at)} by <a href={`/operator/accounts/${encodeURIComponent(code.redeemed_by ?? '')}`}>{code.redeemed_by}</a>
                      </>
                    ) : (
                      <span class="muted">not yet</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </>
  );
}

interface AdminModel {
  id: string;
  kind: string;
  owned_by: string;
  offered: boolean;
  unavailable_reason: string | null;
  /** docs/dashboard.md gives route objects; a server may answer provider names only. */
  routes: ({ provider: string; offered: boolean; unavailable_reason: string | null } | string)[];
}

function ModelsSection() {
  const models = useAsync(() => adminApi.get<ListPage<AdminModel>>('/models'), []);
  return (
    <>
      <PageHeader title="Models" />
      <p class="lead">Every model in the catalog, whether this server offers it, and why not.</p>
      <ErrorNote error={models.error} />
      {models.loading && !models.data ? <Loading /> : null}
      {models.data ? (
        <div class="table-wrap">
          <table data-testid="admin-models">
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Kind</th>
                <th scope="col">Offered</th>
                <th scope="col">Why not / routes</th>
              </tr>
            </thead>
            <tbody>
              {models.data.data.map((model) => (
                <tr key={model.id}>
                  <td class="mono">{model.id}</td>
                  <td>{model.kind}</td>
                  <td>
                    <span class={model.offered ? 'badge badge-active' : 'badge'}>{model.offered ? 'offered' : 'not offered'}</span>
                  </td>
                  <td class="small">
                    {model.unavailable_reason ? <div>{model.unavailable_reason}</div> : null}
                    {(model.routes ?? []).map((route) =>
                      typeof route === 'string' ? (
                        <div key={route} class="muted">
                          route: {route}
                        </div>
                      ) : (
                        <div key={route.provider} class="muted">
                          {route.provider}: {route.offered ? 'ready' : route.unavailable_reason}
                        </div>
                      ),
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </>
  );
}

interface Stats {
  requests?: Record<string, number>;
  image_requests?: Record<string, number>;
  chat_requests?: Record<string, number>;
  http_requests?: number;
  images: number;
  spend: string;
  errors?: Record<string, number>;
  latency_ms?: { p50: number; p95: number; p99: number } | null;
  generation_seconds?: { count: number; p50: number; p95: number; p99: number } | null;
  holds_in_flight: number;
  uptime_s: number;
}

/** Requests by outcome: as docs/dashboard.md names them, or per endpoint kind (image_requests, chat_requests). */
function outcomes(stats: Stats): Record<string, number> {
  if (stats.requests) return stats.requests;
  const merged: Record<string, number> = {};
  for (const [kind, counts] of [['images', stats.image_requests], ['chat', stats.chat_requests]] as const) {
    for (const [outcome, count] of Object.entries(counts ?? {})) merged[`${kind} ${outcome}`] = count;
  }
  return merged;
}

function latency(stats: Stats): string {
  if (stats.latency_ms) return `${stats.latency_ms.p50} / ${stats.latency_ms.p95} / ${stats.latency_ms.p99} ms`;
  const seconds = stats.generation_seconds;
  if (seconds && seconds.count > 0) return `${seconds.p50} / ${seconds.p95} / ${seconds.p99} s`;
  return '—';
}

function ServiceSection() {
  const stats = useAsync(() => adminApi.get<Stats>('/stats'), []);
  useEffect(() => {
    const timer = setInterval(() => document.visibilityState === 'visible' && stats.reload(), 5000);
    return () => clearInterval(timer);
  }, [stats.reload]);
  const data = stats.data;
  const byOutcome = data ? outcomes(data) : {};
  const total = data?.http_requests ?? Object.values(byOutcome).reduce((sum, count) => sum + count, 0);
  return (
    <>
      <PageHeader title="Service">
        <span class="muted small">This instance, live (refreshes every 5 s)</span>
      </PageHeader>
      <ErrorNote error={stats.error} />
      {data ? (
        <>
          <div class="stats">
            <Stat label="Requests" value={total.toLocaleString()} testId="stat-requests" />
            <Stat label="Images" value={data.images.toLocaleString()} />
            <Stat label="Spend" value={usd(data.spend)} />
            <Stat label="Holds in flight" value={String(data.holds_in_flight)} />
            <Stat label="Latency p50 / p95 / p99" value={latency(data)} />
            <Stat label="Up for" value={`${Math.floor(data.uptime_s / 3600)} h ${Math.floor((data.uptime_s % 3600) / 60)} min`} />
          </div>
          <div class="grid-2">
            <CountTable title="Requests by outcome" counts={byOutcome} />
            <CountTable title="Errors by code" counts={data.errors ?? {}} />
          </div>
        </>
      ) : null}
    </>
  );
}

function CountTable({ title, counts }: { title: string; counts: Record<string, number> }) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  return (
    <div class="table-wrap">
      <table>
        <caption>{title}</caption>
        <tbody>
          {entries.length ? (
            entries.map(([name, count]) => (
              <tr key={name}>
                <th scope="row">{name}</th>
                <td class="num">{count.toLocaleString()}</td>
              </tr>
            ))
          ) : (
            <tr>
              <td class="muted">none yet</td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
