import { useState } from 'preact/hooks';
import { dashboardApi } from '../api.ts';
import { ErrorNote, Field, PageHeader, useFormAction, value } from '../components.tsx';
import { useSession } from '../session.tsx';

export function SettingsPage() {
  const { user } = useSession();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [done, setDone] = useState(false);

  const { submit: change, error } = useFormAction(async () => {
    setDone(false);
    await dashboardApi.post('/password', { current_password: current, new_password: next });
    setCurrent('');
    setNext('');
    setDone(true);
  });

  return (
    <section class="narrow">
      <PageHeader title="Settings" />
      <p>
        Signed in as <strong>{user?.email ?? 'operator (token)'}</strong>
        {user?.account_id ? (
          <>
            {' '}
            — account <span class="mono small">{user.account_id}</span>
          </>
        ) : null}
        .
      </p>
      {user?.email ? (
        <form class="card stack" onSubmit={change} aria-labelledby="password-title">
          <h2 id="password-title">Change password</h2>
          <Field label="Current password">
            <input type="password" autoComplete="current-password" required value={current} onInput={(event) => setCurrent(value(event))} />
          </Field>
          <Field label="New password" hint="At least 10 characters. Your other sessions are signed out.">
            <input type="password" autoComplete="new-password" required minLength={10} value={next} onInput={(event) => setNext(value(event))} />
          </Field>
          <ErrorNote error={error} />
          {done ? (
            <p class="notice" role="status">
              Password changed. Every other session of yours has been signed out.
            </p>
          ) : null}
          <div>
            <button type="submit">Change password</button>
          </div>
        </form>
      ) : (
        <p class="muted">The operator token has no password: it is the server's DEEPSHI_ADMIN_TOKEN.</p>
      )}
    </section>
  );
}
