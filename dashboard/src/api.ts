// Every call the dashboard makes goes through here: same-origin fetches with the session cookie, JSON in and out,
// and the server's OpenAI error envelope turned into an ApiError whose message is shown to the person as is.

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | null,
    readonly param: string | null,
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }
}

interface RequestOptions {
  body?: unknown;
  /** An API key (Bearer) instead of the session cookie: the /v1 routes. */
  apiKey?: string;
  signal?: AbortSignal;
  /** Extra query parameters; empty values are left out. */
  query?: Record<string, string | number | null | undefined>;
}

export function withQuery(path: string, query: RequestOptions['query']): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) if (value !== undefined && value !== null && value !== '') params.set(name, String(value));
  const text = params.toString();
  return text ? `${path}${path.includes('?') ? '&' : '?'}${text}` : path;
}

/** Sends a request; resolves with the parsed JSON (undefined for 204), rejects with an ApiError. */
export async function request<T = any>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const response = await send(method, path, options);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

/** Like request, but hands back the Response itself (streams, downloads). Rejects with an ApiError on non-2xx. */
export async function send(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: 'application/json' };
  let body: BodyInit | undefined;
  if (options.body instanceof FormData) body = options.body;
  else if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  let response: Response;
  try {
    response = await fetch(withQuery(path, options.query), { method, headers, body, credentials: 'same-origin', signal: options.signal });
  } catch (error) {
    if ((error as Error).name === 'AbortError') throw error;
    throw new ApiError('The server could not be reached. Check that it is running, then try again.', 0, 'network_error', null);
  }
  if (!response.ok) throw await toApiError(response);
  return response;
}

export async function toApiError(response: Response): Promise<ApiError> {
  const retryAfter = Number(response.headers.get('retry-after')) || null;
  try {
    const json = await response.json();
    const error = json?.error;
    if (error && typeof error.message === 'string') return new ApiError(error.message, response.status, error.code ?? null, error.param ?? null, retryAfter);
  } catch {
    // not JSON: fall through
  }
  return new ApiError(`The server answered ${response.status} ${response.statusText}.`, response.status, null, null, retryAfter);
}

export const dashboardApi = {
  get: <T = any>(path: string, query?: RequestOptions['query']) => request<T>('GET', `/dashboard/api${path}`, { query }),
  post: <T = any>(path: string, body?: unknown, query?: RequestOptions['query']) => request<T>('POST', `/dashboard/api${path}`, { body: body ?? {}, query }),
  delete: <T = any>(path: string, query?: RequestOptions['query']) => request<T>('DELETE', `/dashboard/api${path}`, { query }),
};

export const adminApi = {
  get: <T = any>(path: string, query?: RequestOptions['query']) => request<T>('GET', `/admin/v1${path}`, { query }),
  post: <T = any>(path: string, body?: unknown) => request<T>('POST', `/admin/v1${path}`, { body: body ?? {} }),
  delete: <T = any>(path: string) => request<T>('DELETE', `/admin/v1${path}`),
};

// --- shapes the server answers (docs/dashboard.md) ---------------------------------------------------------------

export interface User {
  id: string;
  email: string | null;
  role: 'member' | 'operator';
  account_id: string | null;
}

export interface DashboardConfig {
  signup: 'open' | 'closed';
  version: string;
  admin_sign_in?: boolean;
}

export interface Account {
  id: string;
  object: 'account';
  name: string;
  balance: string;
  held: string;
  currency: 'USD';
  created_at: number;
}

export interface KeyLimits {
  requests_per_minute: number | null;
  images_per_minute: number | null;
  max_in_flight: number | null;
  tokens_per_minute: number | null;
  max_queued_jobs: number | null;
}

export interface ApiKey {
  id: string;
  object: 'api_key';
  account_id: string;
  name: string;
  models: string[] | null;
  status: 'active' | 'revoked';
  display: string;
  limits: KeyLimits;
  created_at: number;
  last_used_at?: number | null;
  /** Only in the answer that created or rotated the key. */
  key?: string;
}

export interface UsageRecord {
  id: string;
  model: string;
  endpoint: string;
  status: 'held' | 'settled' | 'released';
  held: string;
  cost: string;
  images: number;
  created_at: number;
  resolved_at: number | null;
  key_id?: string | null;
  tokens?: { prompt: number; completion: number } | null;
}

export interface LedgerEntry {
  id: string;
  kind: 'credit' | 'hold' | 'settle' | 'release' | 'adjustment';
  available_delta: string;
  held_delta: string;
  request_id: string | null;
  note: string | null;
  created_at: number;
}

export interface Overview {
  account: Account;
  spend: { today: string; last_7_days: string; last_30_days: string };
  daily: { date: string; model: string; cost: string }[];
  recent: UsageRecord[];
}

export interface ListPage<T> {
  object: 'list';
  data: T[];
  has_more?: boolean;
  next_before?: string | null;
}
