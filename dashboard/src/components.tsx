import type { ComponentChildren, TargetedEvent } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { ApiError } from './api.ts';
import { useSession } from './session.tsx';

/** Loads data for a page; reload() fetches again. The error is the API's, for the page to show. */
export function useAsync<T>(load: () => Promise<T>, deps: unknown[]): { data: T | undefined; error: unknown; loading: boolean; reload: () => void } {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean }>({ data: undefined, error: undefined, loading: true });
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    let current = true;
    setState((previous) => ({ ...previous, loading: true }));
    load().then(
      (data) => current && setState({ data, error: undefined, loading: false }),
      (error) => current && setState({ data: undefined, error, loading: false }),
    );
    return () => {
      current = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((value) => value + 1), []);
  return { ...state, reload };
}

export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** The API's own message, where the person can act on it. */
export function ErrorNote({ error, id }: { error: unknown; id?: string }) {
  if (!error) return null;
  const message = errorMessage(error);
  // Some messages already say when to retry (the sign-in throttle does); say it once.
  const retry = error instanceof ApiError && error.retryAfter && !/try again/i.test(message) ? ` Try again in ${error.retryAfter} s.` : '';
  return (
    <p class="error" role="alert" id={id}>
      {message}
      {retry}
    </p>
  );
}

/**
 * A form's submit handler: keeps the browser from loading a page, clears the last error, runs the action and keeps
 * its error for an <ErrorNote>; busy while it runs.
 */
export function useFormAction(action: () => Promise<unknown>): { submit: (event: Event) => Promise<void>; error: unknown; busy: boolean } {
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };
  return { submit, error, busy };
}

export function Field({ label, hint, children, class: className }: { label: string; hint?: ComponentChildren; children: ComponentChildren; class?: string }) {
  // The hint sits after the label, not in it, so the control's accessible name is the label alone.
  return (
    <div class={`field ${className ?? ''}`}>
      <label class="field">
        <span class="field-label">{label}</span>
        {children}
      </label>
      {hint ? <span class="field-hint">{hint}</span> : null}
    </div>
  );
}

export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [copied, setCopied] = useState<'yes' | 'no' | undefined>();
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied('yes');
    } catch {
      setCopied('no');
    }
    setTimeout(() => setCopied(undefined), 2000);
  };
  return (
    <button type="button" class="secondary" onClick={copy} aria-live="polite">
      {copied === 'yes' ? 'Copied' : copied === 'no' ? 'Select and copy' : label}
    </button>
  );
}

export function Stat({ label, value, hint, testId }: { label: string; value: ComponentChildren; hint?: string; testId?: string }) {
  return (
    <div class="stat" data-testid={testId}>
      <div class="stat-label">{label}</div>
      <div class="stat-value">{value}</div>
      {hint ? <div class="stat-hint">{hint}</div> : null}
    </div>
  );
}

export function PageHeader({ title, children }: { title: string; children?: ComponentChildren }) {
  useEffect(() => {
    document.title = `${title} · Deepshi`;
  }, [title]);
  return (
    <header class="page-header">
      <h1>{title}</h1>
      {children ? <div class="page-actions">{children}</div> : null}
    </header>
  );
}

export function Loading({ what = 'Loading' }: { what?: string }) {
  return (
    <p class="muted" role="status">
      {what}…
    </p>
  );
}

/** Renders children only when signed in; otherwise sends the person to sign in and back here afterwards. */
export function RequireSignIn({ children, role }: { children: ComponentChildren; role?: 'operator' }) {
  const { user } = useSession();
  const location = useLocation();
  useEffect(() => {
    if (user === null) location.route(`/signin?next=${encodeURIComponent(location.url)}`, true);
  }, [user]);
  if (user === undefined) return <Loading />;
  if (user === null) return null;
  if (role === 'operator' && user.role !== 'operator') {
    return (
      <p class="error" role="alert">
        This page is for operators. Sign in with the operator token or as a user with the operator role.
      </p>
    );
  }
  return <>{children}</>;
}

/**
 * The account a page acts on: the member's own, or — for an operator — the one named by ?account_id=, so the
 * same pages serve the operator console (docs/dashboard.md: account pages take account_id for operators).
 */
export function useAccountScope(): { accountId: string | null; query: Record<string, string> } {
  const { user } = useSession();
  const { query } = useLocation();
  const accountId = user?.role === 'operator' ? (query.account_id ?? null) : null;
  return { accountId, query: accountId ? { account_id: accountId } : {} };
}

/** Updates the URL's query (replacing history) so filters survive a reload and can be shared. */
export function useQueryState(): [Record<string, string>, (changes: Record<string, string | number | null | undefined>) => void] {
  const location = useLocation();
  const set = useCallback(
    (changes: Record<string, string | number | null | undefined>) => {
      const params = new URLSearchParams(location.query);
      for (const [name, value] of Object.entries(changes)) {
        if (value === null || value === undefined || value === '') params.delete(name);
        else params.set(name, String(value));
      }
      const text = params.toString();
      location.route(`${location.path}${text ? `?${text}` : ''}`, true);
    },
    [location.path, location.query],
  );
  return [location.query, set];
}

export function Dialog({ open, title, children, onClose }: { open: boolean; title: string; children: ComponentChildren; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  return (
    <dialog ref={ref} aria-label={title} onClose={onClose} onCancel={onClose}>
      <h2>{title}</h2>
      {children}
    </dialog>
  );
}

export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge badge-${status}`}>{status}</span>;
}

export type InputEvent = TargetedEvent<HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, Event>;
export const value = (event: InputEvent) => event.currentTarget.value;
