import { useState } from 'preact/hooks';
import { dashboardApi, type ApiKey, type ListPage } from '../api.ts';
import { CopyButton, Dialog, ErrorNote, Field, Loading, PageHeader, StatusBadge, useAccountScope, useAsync, useFormAction, value } from '../components.tsx';
import { ago, time } from '../format.ts';
import { listModels } from '../models.ts';

type Action = { kind: 'rotate' | 'revoke' | 'delete'; key: ApiKey };

export function KeysPage() {
  const { query, accountId } = useAccountScope();
  const keys = useAsync(() => dashboardApi.get<ListPage<ApiKey>>('/keys', query), [accountId]);
  const [secret, setSecret] = useState<{ key: ApiKey; verb: string } | undefined>();
  const [action, setAction] = useState<Action | undefined>();
  const [actionError, setActionError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  const run = async () => {
    if (!action) return;
    setBusy(true);
    setActionError(undefined);
    try {
      const id = encodeURIComponent(action.key.id);
      if (action.kind === 'delete') await dashboardApi.delete(`/keys/${id}`, query);
      else {
        const answer = await dashboardApi.post<ApiKey>(`/keys/${id}/${action.kind}`, {}, query);
        if (action.kind === 'rotate') setSecret({ key: answer, verb: 'rotated' });
      }
      setAction(undefined);
      keys.reload();
    } catch (error) {
      setActionError(error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <PageHeader title="API keys" />
      <p class="lead">
        Keys authenticate calls to <code>/v1</code> and spend from this account's balance. A key's secret is shown once, when it is created or rotated.
      </p>
      {secret ? <NewSecret secret={secret} onDone={() => setSecret(undefined)} /> : null}
      <CreateKey
        onCreated={(key) => {
          setSecret({ key, verb: 'created' });
          keys.reload();
        }}
      />
      <h2>Keys</h2>
      {keys.loading && !keys.data ? <Loading /> : null}
      <ErrorNote error={keys.error} />
      {keys.data ? (
        keys.data.data.length ? (
          <div class="table-wrap">
            <table data-testid="keys-table">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Key</th>
                  <th scope="col">Models</th>
                  <th scope="col">Limits</th>
                  <th scope="col">Status</th>
                  <th scope="col">Created</th>
                  <th scope="col">Last used</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {keys.data.data.map((key) => (
                  <tr key={key.id} data-key-id={key.id}>
                    <td>{key.name}</td>
                    <td class="mono small">{key.display}</td>
                    <td>{key.models ? key.models.join(', ') : <span class="muted">all</span>}</td>
                    <td class="small">{describeLimits(key)}</td>
                    <td>
                      <StatusBadge status={key.status} />
                    </td>
                    <td title={time(key.created_at)}>{ago(key.created_at)}</td>
                    <td title={key.last_used_at ? time(key.last_used_at) : undefined}>{ago(key.last_used_at)}</td>
                    <td class="actions">
                      <div class="key-actions">
                        {key.status === 'active' ? (
                          <>
                            <button type="button" class="secondary small" aria-label={`Rotate ${key.name}`} onClick={() => setAction({ kind: 'rotate', key })}>
                              Rotate
                            </button>
                            <button type="button" class="secondary small" aria-label={`Revoke ${key.name}`} onClick={() => setAction({ kind: 'revoke', key })}>
                              Revoke
                            </button>
                          </>
                        ) : null}
                        <button type="button" class="danger small" aria-label={`Delete ${key.name}`} onClick={() => setAction({ kind: 'delete', key })}>
                          Delete
                        </button>
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p class="muted">No keys yet: create one above.</p>
        )
      ) : null}
      <Dialog
        open={Boolean(action)}
        title={action ? `${capitalise(action.kind)} “${action.key.name}”?` : ''}
        onClose={() => {
          setAction(undefined);
          setActionError(undefined);
        }}
      >
        {action ? <p>{CONSEQUENCES[action.kind]}</p> : null}
        <ErrorNote error={actionError} />
        <div class="row">
          <button type="button" class={action?.kind === 'rotate' ? '' : 'danger'} onClick={run} disabled={busy}>
            {action ? capitalise(action.kind) : ''}
          </button>
          <button type="button" class="secondary" onClick={() => setAction(undefined)}>
            Cancel
          </button>
        </div>
      </Dialog>
    </section>
  );
}

const CONSEQUENCES = {
  rotate: 'A new secret is issued and shown once; the current secret stops working at once.',
  revoke: 'The key stops working at once (calls get 403). It stays listed, and cannot be re-enabled.',
  delete: 'The key is removed for good; calls with it get 401. Its past usage stays in Usage.',
};

const capitalise = (text: string) => text[0].toUpperCase() + text.slice(1);

function describeLimits(key: ApiKey): string {
  const one = (value: number | null, unit: string) => (value === null ? `server default ${unit}` : value === 0 ? `unlimited ${unit}` : `${value} ${unit}`);
  const parts = [one(key.limits.requests_per_minute, 'requests/min'), one(key.limits.images_per_minute, 'images/min'), `${key.limits.max_in_flight ?? 'default'} in flight`];
  // The text-model and async-job limits only when set on the key, to keep the common line short.
  if (key.limits.tokens_per_minute !== null) parts.push(one(key.limits.tokens_per_minute, 'tokens/min'));
  if (key.limits.max_queued_jobs !== null) parts.push(`${key.limits.max_queued_jobs || 'unlimited'} queued jobs`);
  return parts.join(' · ');
}

function NewSecret({ secret, onDone }: { secret: { key: ApiKey; verb: string }; onDone: () => void }) {
  return (
    <div class="card notice" role="status" data-testid="new-secret">
      <h2>
        Key “{secret.key.name}” {secret.verb}
      </h2>
      <p>Copy the secret now. It is not stored in readable form and will not be shown again.</p>
      <div class="secret">
        <code data-testid="secret-value">{secret.key.key}</code>
        <CopyButton text={secret.key.key ?? ''} label="Copy key" />
        <button type="button" class="secondary" onClick={onDone}>
          Done
        </button>
      </div>
    </div>
  );
}

function CreateKey({ onCreated }: { onCreated: (key: ApiKey) => void }) {
  const { query, accountId } = useAccountScope();
  const models = useAsync(() => listModels(accountId), [accountId]);
  const [name, setName] = useState('');
  const [restrict, setRestrict] = useState(false);
  const [chosen, setChosen] = useState<string[]>([]);
  const [limits, setLimits] = useState({ requests_per_minute: '', images_per_minute: '', max_in_flight: '', tokens_per_minute: '', max_queued_jobs: '' });

  const { submit, error, busy } = useFormAction(async () => {
    const limitBody = Object.fromEntries(Object.entries(limits).filter(([, text]) => text !== '').map(([field, text]) => [field, Number(text)]));
    const key = await dashboardApi.post<ApiKey>('/keys', { name, models: restrict ? chosen : null, ...(Object.keys(limitBody).length ? { limits: limitBody } : {}) }, query);
    setName('');
    setChosen([]);
    setRestrict(false);
    setLimits({ requests_per_minute: '', images_per_minute: '', max_in_flight: '', tokens_per_minute: '', max_queued_jobs: '' });
    onCreated(key);
  });

  return (
    <form class="card stack" onSubmit={submit} aria-labelledby="create-key-title">
      <h2 id="create-key-title">Create a key</h2>
      <Field label="Name" hint="What uses it, e.g. “staging” or “mobile app”.">
        <input type="text" name="name" required maxLength={200} value={name} onInput={(event) => setName(value(event))} />
      </Field>
      <fieldset>
        <legend>Models</legend>
        <label class="checks">
          <input type="checkbox" checked={restrict} onChange={(event) => setRestrict(event.currentTarget.checked)} /> Only allow the models I choose
        </label>
        {restrict ? (
          models.data ? (
            <div class="checks" role="group" aria-label="Allowed models">
              {models.data.map((model) => (
                <label key={model.id}>
                  <input
                    type="checkbox"
                    checked={chosen.includes(model.id)}
                    onChange={(event) => setChosen(event.currentTarget.checked ? [...chosen, model.id] : chosen.filter((id) => id !== model.id))}
                  />
                  {model.id}
                </label>
              ))}
            </div>
          ) : (
            <>
              <ErrorNote error={models.error} />
              <Field label="Model ids, comma-separated">
                <input type="text" value={chosen.join(', ')} onInput={(event) => setChosen(value(event).split(',').map((id) => id.trim()).filter(Boolean))} />
              </Field>
            </>
          )
        ) : (
          <p class="muted small">The key may call every model the account can.</p>
        )}
      </fieldset>
      <fieldset>
        <legend>Limits (optional)</legend>
        <p class="muted small">Leave empty for the server's defaults; a key cannot be given looser limits than the server allows.</p>
        <div class="field-grid">
          <Field label="Requests per minute">
            <input type="number" min={1} step={1} value={limits.requests_per_minute} onInput={(event) => setLimits({ ...limits, requests_per_minute: value(event) })} />
          </Field>
          <Field label="Images per minute">
            <input type="number" min={1} step={1} value={limits.images_per_minute} onInput={(event) => setLimits({ ...limits, images_per_minute: value(event) })} />
          </Field>
          <Field label="Requests in flight">
            <input type="number" min={1} step={1} value={limits.max_in_flight} onInput={(event) => setLimits({ ...limits, max_in_flight: value(event) })} />
          </Field>
          <Field label="Tokens per minute" hint="Text models.">
            <input type="number" min={1} step={1} value={limits.tokens_per_minute} onInput={(event) => setLimits({ ...limits, tokens_per_minute: value(event) })} />
          </Field>
          <Field label="Queued jobs" hint="Async image jobs waiting or running.">
            <input type="number" min={1} step={1} value={limits.max_queued_jobs} onInput={(event) => setLimits({ ...limits, max_queued_jobs: value(event) })} />
          </Field>
        </div>
      </fieldset>
      <ErrorNote error={error} />
      <div>
        <button type="submit" disabled={busy}>
          {busy ? 'Creating…' : 'Create key'}
        </button>
      </div>
    </form>
  );
}
