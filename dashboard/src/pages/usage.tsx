import { dashboardApi, withQuery, type ApiKey, type ListPage, type UsageRecord } from '../api.ts';
import { ErrorNote, Field, Loading, PageHeader, useAccountScope, useAsync, useQueryState, value } from '../components.tsx';
import { dayToUnix } from '../format.ts';
import { UsageTable } from './overview.tsx';

const STATUSES = ['held', 'settled', 'released'];
const ENDPOINTS = ['images.generations', 'images.edits', 'chat.completions'];

/** Per-request history. Filters and the page live in the URL, so a reload or a shared link shows the same rows. */
export function UsagePage() {
  const { query: scope, accountId } = useAccountScope();
  const [query, setQuery] = useQueryState();
  const filters = {
    key_id: query.key_id,
    model: query.model,
    status: query.status,
    endpoint: query.endpoint,
    from: query.from ? dayToUnix(query.from) : undefined,
    // "to" is a day the person includes: the API's bound is exclusive, so it is the next day's midnight.
    to: query.to ? (dayToUnix(query.to) ?? 0) + 86_400 : undefined,
  };
  const limit = query.limit ?? '50';
  const keys = useAsync(() => dashboardApi.get<ListPage<ApiKey>>('/keys', scope), [accountId]);
  const usage = useAsync(
    () => dashboardApi.get<ListPage<UsageRecord>>('/usage', { ...scope, ...filters, limit, before: query.before }),
    [accountId, JSON.stringify(filters), limit, query.before],
  );
  const keyNames = new Map((keys.data?.data ?? []).map((key) => [key.id, key.name]));
  const csv = withQuery('/dashboard/api/usage.csv', { ...scope, ...filters });
  const filter = (name: string) => (event: Parameters<typeof value>[0]) => setQuery({ [name]: value(event), before: null });

  return (
    <section>
      <PageHeader title="Usage">
        <a class="button secondary" href={csv} download="deepshi-usage.csv">
          Export CSV
        </a>
      </PageHeader>
      <form class="card row" aria-label="Filters" onSubmit={(event) => event.preventDefault()}>
        <Field label="Key">
          <select value={query.key_id ?? ''} onChange={filter('key_id')}>
            <option value="">Any key</option>
            {keys.data?.data.map((key) => (
              <option value={key.id} key={key.id}>
                {key.name} ({key.display})
              </option>
            ))}
          </select>
        </Field>
        <Field label="Model">
          <input type="text" value={query.model ?? ''} placeholder="any" onChange={filter('model')} />
        </Field>
        <Field label="Status">
          <select value={query.status ?? ''} onChange={filter('status')}>
            <option value="">Any status</option>
            {STATUSES.map((status) => (
              <option key={status}>{status}</option>
            ))}
          </select>
        </Field>
        <Field label="Endpoint">
          <select value={query.endpoint ?? ''} onChange={filter('endpoint')}>
            <option value="">Any endpoint</option>
            {ENDPOINTS.map((endpoint) => (
              <option key={endpoint}>{endpoint}</option>
            ))}
          </select>
        </Field>
        <Field label="From (UTC day)">
          <input type="date" value={query.from ?? ''} onChange={filter('from')} />
        </Field>
        <Field label="To (UTC day, included)">
          <input type="date" value={query.to ?? ''} onChange={filter('to')} />
        </Field>
        <Field label="Rows per page">
          <select value={limit} onChange={filter('limit')}>
            {[...new Set(['25', '50', '100', '500', limit])].map((size) => (
              <option key={size}>{size}</option>
            ))}
          </select>
        </Field>
        <button
          type="button"
          class="secondary"
          onClick={() => setQuery({ key_id: null, model: null, status: null, endpoint: null, from: null, to: null, before: null })}
        >
          Clear filters
        </button>
      </form>
      {usage.loading && !usage.data ? <Loading /> : null}
      <ErrorNote error={usage.error} />
      {usage.data ? <UsageTable rows={usage.data.data} keyNames={keyNames} /> : null}
      <nav class="row" aria-label="Pages">
        {query.before ? (
          <button type="button" class="secondary" onClick={() => history.back()}>
            ← Newer
          </button>
        ) : null}
        {query.before ? (
          <button type="button" class="secondary" onClick={() => setQuery({ before: null })}>
            Newest
          </button>
        ) : null}
        {usage.data?.has_more && usage.data.next_before ? (
          <a class="button secondary" href={withQuery(location.pathname, { ...query, before: usage.data.next_before })}>
            Older →
          </a>
        ) : null}
        {accountId ? <span class="muted small">Account {accountId}</span> : null}
      </nav>
    </section>
  );
}
