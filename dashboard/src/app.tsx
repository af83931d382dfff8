import type { JSX } from 'preact';
import { LocationProvider, Route, Router, useLocation } from 'preact-iso';
import { useEffect } from 'preact/hooks';
import { Loading, RequireSignIn } from './components.tsx';
import { SessionProvider, useSession } from './session.tsx';
import { ModelsPage } from './pages/models.tsx';
import { ReferencePage } from './pages/reference.tsx';
import { CreditsPage } from './pages/credits.tsx';
import { KeysPage } from './pages/keys.tsx';
import { OperatorPage } from './pages/operator.tsx';
import { OverviewPage } from './pages/overview.tsx';
import { PlaygroundPage } from './pages/playground.tsx';
import { UsagePage } from './pages/usage.tsx';
import { SettingsPage } from './pages/settings.tsx';
import { SignInPage, SignUpPage } from './pages/sign-in.tsx';

export function App() {
  return (
    <LocationProvider>
      <SessionProvider>
        <Shell />
      </SessionProvider>
    </LocationProvider>
  );
}

const signedIn = (Page: () => JSX.Element, role?: 'operator') => () => (
  <RequireSignIn role={role}>
    <Page />
  </RequireSignIn>
);

function Shell() {
  return (
    <div class="shell">
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <Navigation />
      <main id="main" tabIndex={-1}>
        <Router>
          <Route path="/" component={Home} />
          <Route path="/signin" component={SignInPage} />
          <Route path="/signup" component={SignUpPage} />
          <Route path="/overview" component={signedIn(OverviewPage)} />
          <Route path="/keys" component={signedIn(KeysPage)} />
          <Route path="/usage" component={signedIn(UsagePage)} />
          <Route path="/credits" component={signedIn(CreditsPage)} />
          <Route path="/playground" component={signedIn(PlaygroundPage)} />
          <Route path="/operator" component={signedIn(OperatorPage, 'operator')} />
          <Route path="/operator/*" component={signedIn(OperatorPage, 'operator')} />
          <Route path="/settings" component={signedIn(SettingsPage)} />
          <Route path="/models" component={ModelsPage} />
          <Route path="/reference" component={ReferencePage} />
          <Route default component={NotFound} />
        </Router>
      </main>
    </div>
  );
}

/** `/`: the overview when signed in (the console for the operator token), otherwise the sign-in page. */
function Home() {
  const { user } = useSession();
  const location = useLocation();
  useEffect(() => {
    if (user === undefined) return;
    if (user === null) location.route('/signin', true);
    else location.route(user.role === 'operator' && !user.account_id ? '/operator' : '/overview', true);
  }, [user]);
  return <Loading />;
}

function NotFound() {
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        There is no dashboard page at this address. Go to the <a href="/">start page</a> or the <a href="/models">models</a>.
      </p>
    </section>
  );
}

function Navigation() {
  const { user, signOut, config } = useSession();
  const location = useLocation();
  // An operator acting on an account (?account_id=) keeps it across the account pages.
  const scopedAccount = user?.role === 'operator' ? location.query.account_id : undefined;
  const link = (href: string, label: string, scoped = false) => {
    const current = location.path === href || (href !== '/' && location.path.startsWith(`${href}/`));
    const target = scoped && scopedAccount ? `${href}?account_id=${encodeURIComponent(scopedAccount)}` : href;
    return (
      <li>
        <a href={target} aria-current={current ? 'page' : undefined}>
          {label}
        </a>
      </li>
    );
  };
  const isOperator = user?.role === 'operator';
  const hasAccount = Boolean(user?.account_id);
  return (
    <nav class="sidebar" aria-label="Dashboard">
      <div class="sidebar-inner">
      <a class="brand" href="/">
        <img src="/favicon.svg" alt="" width="24" height="24" />
        <span>Deepshi</span>
      </a>
      {user === null ? (
        // Signed out, the way in sits where the account's pages will be once signed in: first under the brand.
        <ul aria-label="Account" class="sign-in-links">
          {link('/signin', 'Sign in')}
          {config?.signup === 'open' ? link('/signup', 'Create account') : null}
        </ul>
      ) : null}
      {user && (hasAccount || scopedAccount) ? (
        <ul aria-label={scopedAccount ? `Account ${scopedAccount}` : 'Account'}>
          {scopedAccount ? <li class="muted small mono">{scopedAccount}</li> : null}
          {link('/overview', 'Overview', true)}
          {link('/keys', 'API keys', true)}
          {link('/usage', 'Usage', true)}
          {link('/credits', 'Credits', true)}
          {link('/playground', 'Playground', true)}
        </ul>
      ) : null}
      {isOperator ? (
        <ul aria-label="Operator">
          {link('/operator', 'Operator console')}
        </ul>
      ) : null}
      <ul aria-label="Documentation">
        {link('/models', 'Models & pricing')}
        {link('/reference', 'API reference')}
      </ul>
      <div class="sidebar-foot">
        {user ? (
          <>
            <p class="muted small" data-testid="signed-in-as">
              {user.email ?? 'Operator (token)'}
            </p>
            <a href="/settings" class="small">
              Settings
            </a>
            <button
              type="button"
              class="secondary"
              onClick={async () => {
                await signOut();
                location.route('/signin');
              }}
            >
              Sign out
            </button>
          </>
        ) : null}
        {config?.version ? <p class="muted small">Deepshi {config.version}</p> : null}
      </div>
      </div>
    </nav>
  );
}
