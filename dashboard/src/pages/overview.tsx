import { useEffect } from 'preact/hooks';
import { dashboardApi, type Overview, type UsageRecord } from '../api.ts';
import { DailySpendChart } from '../chart.tsx';
import { ErrorNote, Loading, PageHeader, Stat, StatusBadge, useAccountScope, useAsync } from '../components.tsx';
import { sumUsd, time, usd } from '../format.ts';

export function OverviewPage() {
  const { query, accountId } = useAccountScope();
  const overview = useAsync(() => dashboardApi.get<Overview>('/overview', query), [accountId]);
  // Near real time: usage is settled as requests finish, so the figures refresh while the page is open.
  useEffect(() => {
    const timer = setInterval(() => document.visibilityState === 'visible' && overview.reload(), 15_000);
    return () => clearInterval(timer);
  }, [overview.reload]);
  const data = overview.data;
  return (
    <section>
      <PageHeader title="Overview">
        <button type="button" class="secondary" onClick={overview.reload}>
          Refresh
        </button>
      </PageHeader>
      {!data && overview.loading ? <Loading /> : null}
      <ErrorNote error={overview.error} />
      {data ? (
        <>
          <p class="lead">
            {data.account.name} <span class="muted mono small">{data.account.id}</span>
          </p>
          <div class="stats">
            <Stat label="Balance" value={usd(data.account.balance)} hint="Available to spend" testId="balance" />
            <Stat label="On hold" value={usd(data.account.held)} hint="Reserved by requests in progress" testId="held" />
            <Stat label="Spend today" value={usd(data.spend.today)} hint="Since 00:00 UTC" testId="spend-today" />
            <Stat label="Last 7 days" value={usd(data.spend.last_7_days)} testId="spend-7d" />
            <Stat label="Last 30 days" value={usd(data.spend.last_30_days)} testId="spend-30d" />
          </div>
          <DailySpendChart daily={data.daily} />
          <details>
            <summary>Daily spend as a table</summary>
            <DailyTable daily={data.daily} />
          </details>
          <h2>Latest requests</h2>
          <UsageTable rows={data.recent} />
          <p>
            <a href={`/usage${accountId ? `?account_id=${encodeURIComponent(accountId)}` : ''}`}>All usage →</a>
          </p>
        </>
      ) : null}
    </section>
  );
}

function DailyTable({ daily }: { daily: Overview['daily'] }) {
  if (!daily.length) return <p class="muted">No spend in the last 30 days.</p>;
  const days = [...new Set(daily.map((entry) => entry.date))];
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Day (UTC)</th>
            <th scope="col">Model</th>
            <th scope="col" class="num">
              Cost
            </th>
          </tr>
        </thead>
        <tbody>
          {days.flatMap((day) => [
            ...daily
              .filter((entry) => entry.date === day)
              .map((entry) => (
                <tr key={`${day}-${entry.model}`}>
                  <td>{day}</td>
                  <td>{entry.model}</td>
                  <td class="num">{usd(entry.cost)}</td>
                </tr>
              )),
          ])}
          <tr>
            <th scope="row" colSpan={2}>
              Total
            </th>
            <td class="num">{usd(sumUsd(daily.map((entry) => entry.cost)))}</td>
          </tr>
        </tbody>
      </table>
    </div>
  );
}

export function UsageTable({ rows, keyNames }: { rows: UsageRecord[]; keyNames?: Map<string, string> }) {
  if (!rows.length) return <p class="muted">No requests yet. Try the <a href="/playground">playground</a>.</p>;
  return (
    <div class="table-wrap">
      <table data-testid="usage-table">
        <thead>
          <tr>
            <th scope="col">Time</th>
            {keyNames ? <th scope="col">Key</th> : null}
            <th scope="col">Model</th>
            <th scope="col">Endpoint</th>
            <th scope="col">Status</th>
            <th scope="col" class="num">
              Images / tokens
            </th>
            <th scope="col" class="num">
              Cost
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={row.id} data-request-id={row.id}>
              <td title={row.id}>{time(row.created_at)}</td>
              {keyNames ? <td>{row.key_id ? (keyNames.get(row.key_id) ?? <span class="muted mono small">{row.key_id}</span>) : '—'}</td> : null}
              <td>{row.model}</td>
              <td class="mono small">{row.endpoint}</td>
              <td>
                <StatusBadge status={row.status} />
              </td>
              <td class="num">{row.tokens ? `${row.tokens.prompt} + ${row.tokens.completion} tokens` : `${row.images} image${row.images === 1 ? '' : 's'}`}</td>
              <td class="num">{row.status === 'held' ? <span class="muted">held {usd(row.held)}</span> : usd(row.cost)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
