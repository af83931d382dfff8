import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { dashboardApi, type User } from '../api.ts';
import { ErrorNote, Field, PageHeader, useFormAction, value } from '../components.tsx';
import { useSession } from '../session.tsx';

/** Where to go after signing in: ?next= when it is one of our own paths, else the user's start page. */
function nextPath(query: Record<string, string>, user: User): string {
  const next = query.next;
  // Only a path of this site: never //host or /\host, which a browser may read as another origin.
  if (next && /^\/(?![/\\])/.test(next) && !next.startsWith('/signin')) return next;
  return user.role === 'operator' && !user.account_id ? '/operator' : '/overview';
}

export function SignInPage() {
  const { config, setUser } = useSession();
  const location = useLocation();
  const [mode, setMode] = useState<'password' | 'token'>('password');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [token, setToken] = useState('');

  const { submit, error, busy } = useFormAction(async () => {
    const body = mode === 'password' ? { email, password } : { admin_token: token };
    const { user } = await dashboardApi.post<{ user: User }>('/session', body);
    setUser(user);
    location.route(nextPath(location.query, user));
  });

  return (
    <section class="narrow">
      <PageHeader title="Sign in" />
      {config?.admin_sign_in !== false ? (
        <div class="tabs" role="tablist" aria-label="How to sign in">
          <button type="button" role="tab" aria-selected={mode === 'password'} onClick={() => setMode('password')}>
            Email and password
          </button>
          <button type="button" role="tab" aria-selected={mode === 'token'} onClick={() => setMode('token')}>
            Operator token
          </button>
        </div>
      ) : null}
      <form onSubmit={submit} class="stack" aria-describedby="signin-error">
        {mode === 'password' ? (
          <>
            <Field label="Email">
              <input type="email" name="email" autoComplete="username" required value={email} onInput={(event) => setEmail(value(event))} />
            </Field>
            <Field label="Password">
              <input type="password" name="password" autoComplete="current-password" required value={password} onInput={(event) => setPassword(value(event))} />
            </Field>
          </>
        ) : (
          <Field label="Operator token" hint="The server's DEEPSHI_ADMIN_TOKEN.">
            <input type="password" name="admin_token" autoComplete="off" required value={token} onInput={(event) => setToken(value(event))} />
          </Field>
        )}
        <ErrorNote error={error} id="signin-error" />
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
      {config?.signup === 'open' ? (
        <p>
          No account yet? <a href="/signup">Create one</a>.
        </p>
      ) : null}
      <p class="muted small">
        On a fresh install, the first start prints a development sign-in (dev@localhost and a password) beside the API key.
      </p>
    </section>
  );
}

export function SignUpPage() {
  const { config, setUser } = useSession();
  const location = useLocation();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');

  const { submit, error, busy } = useFormAction(async () => {
    const { user } = await dashboardApi.post<{ user: User }>('/signup', { email, password });
    setUser(user);
    location.route('/overview');
  });

  return (
    <section class="narrow">
      <PageHeader title="Create an account" />
      {config?.signup === 'closed' ? (
        <p class="notice" role="status">
          Sign-up is closed on this server: the operator creates accounts. <a href="/signin">Sign in</a> instead.
        </p>
      ) : null}
      <form onSubmit={submit} class="stack">
        <Field label="Email">
          <input type="email" name="email" autoComplete="username" required value={email} onInput={(event) => setEmail(value(event))} />
        </Field>
        <Field label="Password" hint="At least 10 characters.">
          <input type="password" name="password" autoComplete="new-password" required minLength={10} value={password} onInput={(event) => setPassword(value(event))} />
        </Field>
        <ErrorNote error={error} />
        <button type="submit" disabled={busy}>
          {busy ? 'Creating…' : 'Create account'}
        </button>
      </form>
      <p>
        Already have an account? <a href="/signin">Sign in</a>.
      </p>
    </section>
  );
}
