import { documentedFetch } from './openapi-responses.ts';

/**
 * A browser-like caller of /dashboard/api and /admin/v1: keeps the session cookie it is given, sends the page's
 * Origin on every request (a different one when told to), and has every response validated against /openapi.json.
 */
export class DashboardClient {
  cookie: string | undefined;
  lastSetCookie: string | null = null;

  constructor(
    readonly url: string,
    readonly origin: string | null = url,
  ) {}

  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    const response = await documentedFetch(`${this.url}${path}`, {
      method,
      headers: {
        ...(this.origin ? { origin: this.origin } : {}),
        ...(this.cookie ? { cookie: this.cookie } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const setCookie = response.headers.get('set-cookie');
    this.lastSetCookie = setCookie;
    if (setCookie) {
      const [pair] = setCookie.split(';');
      this.cookie = pair.endsWith('=') ? undefined : pair;
    }
    return response;
  }

  get = (path: string, headers?: Record<string, string>) => this.request('GET', path, undefined, headers);
  post = (path: string, body: unknown = {}, headers?: Record<string, string>) => this.request('POST', path, body, headers);
  delete = (path: string, headers?: Record<string, string>) => this.request('DELETE', path, undefined, headers);

  async signIn(email: string, password: string) {
    const response = await this.post('/dashboard/api/session', { email, password });
    if (response.status !== 200) throw new Error(`sign-in failed: ${response.status} ${response.text}`);
    return response.body.user;
  }

  /** A client of the same origin holding the same cookie (another tab, or a copied cookie). */
  withOrigin(origin: string | null): DashboardClient {
    const other = new DashboardClient(this.url, origin);
    other.cookie = this.cookie;
    return other;
  }
}
