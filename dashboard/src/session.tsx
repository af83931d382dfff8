import { createContext, type ComponentChildren } from 'preact';
import { useCallback, useContext, useEffect, useState } from 'preact/hooks';
import { ApiError, dashboardApi, request, type DashboardConfig, type User } from './api.ts';

interface SessionState {
  /** undefined while loading; null when signed out. */
  user: User | null | undefined;
  config: DashboardConfig | undefined;
  setUser(user: User | null): void;
  signOut(): Promise<void>;
}

const SessionContext = createContext<SessionState>(undefined as unknown as SessionState);

export function SessionProvider({ children }: { children: ComponentChildren }) {
  const [user, setUserState] = useState<User | null | undefined>(undefined);
  const [config, setConfig] = useState<DashboardConfig | undefined>(undefined);

  useEffect(() => {
    dashboardApi.get<DashboardConfig>('/config').then(setConfig, () => setConfig({ signup: 'closed', version: '' }));
    dashboardApi.get<{ user: User }>('/session').then(
      (answer) => setUserState(answer.user),
      () => setUserState(null),
    );
  }, []);

  const setUser = useCallback((next: User | null) => {
    if (!next) forgetPlaygroundKey();
    setUserState(next);
  }, []);

  const signOut = useCallback(async () => {
    await dashboardApi.delete('/session').catch(() => undefined);
    forgetPlaygroundKey();
    setUserState(null);
  }, []);

  return <SessionContext.Provider value={{ user, config, setUser, signOut }}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionState {
  return useContext(SessionContext);
}

// --- the playground's temporary key --------------------------------------------------------------------------------
// Held in this module only (never in storage, the URL or the DOM): the server issues it for the signed-in account,
// it expires within the hour, and signing out deletes it on the server.

let playgroundKey: { key: string; expiresAt: number; accountId: string | null } | undefined;
let pending: Promise<string> | undefined;

export function forgetPlaygroundKey(): void {
  playgroundKey = undefined;
  pending = undefined;
}

/** A key of the signed-in account (or, for an operator, of account_id) to call /v1 with. */
export async function temporaryKey(accountId: string | null = null): Promise<string> {
  const now = Date.now() / 1000;
  if (playgroundKey && playgroundKey.accountId === accountId && playgroundKey.expiresAt - now > 120) return playgroundKey.key;
  pending ??= request<{ key: string; expires_at: number }>('POST', '/dashboard/api/playground-key', {
    body: {},
    query: accountId ? { account_id: accountId } : undefined,
  })
    .then((answer) => {
      playgroundKey = { key: answer.key, expiresAt: answer.expires_at, accountId };
      return answer.key;
    })
    .finally(() => {
      pending = undefined;
    });
  return pending;
}

export function isSignedOut(error: unknown): boolean {
  return error instanceof ApiError && error.status === 401;
}
