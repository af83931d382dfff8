import type { ComponentChildren } from 'preact';
import { adminApi } from '../api.ts';
import { ErrorNote, Field, Loading, PageHeader, useAsync, useQueryState, value } from '../components.tsx';
import { toNanos, usd } from '../format.ts';

// The operator console's margins: per model, what callers paid against what the upstreams billed
// (GET /admin/v1/margins, docs/dashboard.md).

interface MarginFigures {
  requests: number;
  charged: string;
  requests_with_upstream_cost: number;
  charged_with_upstream_cost: string;
  /** Null when no upstream bill is known. */
  upstream_cost: string | null;
  margin: string | null;
}

interface Margins {
  days: number;
  since: number;
  data: (MarginFigures & { model: string })[];
  total: MarginFigures;
}

const PERIODS: [number, string][] = [
  [1, 'Today'],
  [7, 'Last 7 days'],
  [30, 'Last 30 days'],
  [90, 'Last 90 days'],
  [366, 'Last 366 days'],
];

/** The margin as a share of what the billed requests were charged, to 0.1 %, from the exact amounts. */
function marginPercent(figures: MarginFigures): string {
  if (figures.margin === null) return '—';
  const charged = toNanos(figures.charged_with_upstream_cost);
  if (charged === 0n) return '—';
  const tenths = (toNanos(figures.margin) * 1000n) / charged;
  const negative = tenths < 0n;
  const absolute = negative ? -tenths : tenths;
  return `${negative ? '−' : ''}${absolute / 10n}.${absolute % 10n} %`;
}

const utcDay = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });

export function MarginsSection() {
  const [query, setQuery] = useQueryState();
  const days = PERIODS.some(([value]) => String(value) === query.days) ? Number(query.days) : 30;
  const margins = useAsync(() => adminApi.get<Margins>('/margins', { days }), [days]);
  const data = margins.data;
  return (
    <>
      <PageHeader title="Margins" />
      <p class="lead">
        Per model, what callers paid and what the upstreams billed for the same requests. The bill is known only where the
        upstream reports it; the margin compares it with the charge of exactly those requests.
      </p>
      <form class="card row" aria-label="Period" onSubmit={(event) => event.preventDefault()}>
        <Field label="Period (UTC days)">
          <select value={String(days)} onChange={(event) => setQuery({ days: value(event) === '30' ? null : value(event) })}>
            {PERIODS.map(([value, label]) => (
              <option key={value} value={String(value)}>
                {label}
              </option>
            ))}
          </select>
        </Field>
      </form>
      <ErrorNote error={margins.error} />
      {margins.loading && !data ? <Loading /> : null}
      {data ? (
        <div class="table-wrap">
          <table data-testid="margins-table">
            <caption>
              Settled requests since {utcDay.format(new Date(data.since * 1000))} (UTC), {data.days === 1 ? 'today' : `${data.days} days`}
            </caption>
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col" class="num">
                  Requests
                </th>
                <th scope="col" class="num">
                  Charged
                </th>
                <th scope="col" class="num">
                  Upstream bill known
                </th>
                <th scope="col" class="num">
                  Charged for those
                </th>
                <th scope="col" class="num">
                  Upstream cost
                </th>
                <th scope="col" class="num">
                  Margin
                </th>
                <th scope="col" class="num">
                  Margin %
                </th>
              </tr>
            </thead>
            <tbody>
              {data.data.map((row) => (
                <MarginRow key={row.model} label={<span class="mono">{row.model}</span>} figures={row} />
              ))}
            </tbody>
            {data.data.length ? (
              <tfoot>
                <MarginRow label="Total" figures={data.total} />
              </tfoot>
            ) : null}
          </table>
          {data.data.length === 0 ? <p class="muted">No settled requests in this period.</p> : null}
        </div>
      ) : null}
    </>
  );
}

function MarginRow({ label, figures }: { label: ComponentChildren; figures: MarginFigures }) {
  const known = figures.requests_with_upstream_cost > 0;
  const loss = figures.margin !== null && figures.margin.startsWith('-');
  return (
    <tr>
      <th scope="row">{label}</th>
      <td class="num">{figures.requests.toLocaleString()}</td>
      <td class="num">{usd(figures.charged)}</td>
      <td class="num">
        {figures.requests_with_upstream_cost.toLocaleString()} of {figures.requests.toLocaleString()}
      </td>
      <td class="num">{known ? usd(figures.charged_with_upstream_cost) : '—'}</td>
      <td class="num">{usd(figures.upstream_cost)}</td>
      <td class={loss ? 'num loss' : 'num'}>{usd(figures.margin)}</td>
      <td class={loss ? 'num loss' : 'num'}>{marginPercent(figures)}</td>
    </tr>
  );
}
