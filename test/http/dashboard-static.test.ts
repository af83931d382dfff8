import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import { installErrorHandling } from '../../src/http/error-handler.ts';
import { DASHBOARD_CSP, DASHBOARD_PAGES, DEFAULT_DASHBOARD_DIR, registerDashboard } from '../../src/http/dashboard-static.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/** The built dashboard served at / by the same server (src/http/dashboard-static.ts). */
describe('dashboard static serving', () => {
  let server: TestServer;
  before(async () => {
    assert.ok(
      fs.existsSync(path.join(DEFAULT_DASHBOARD_DIR, 'index.html')),
      'dashboard/dist is built (npm install runs `npm run build`; or run `npm run build:dashboard`)',
    );
    server = await startTestServer();
  });
  after(() => server.close());

  it('serves the page at every path the dashboard routes, with the strict CSP and no inline script or style', async () => {
    const paths = DASHBOARD_PAGES.map((page) => page.replace('*', 'accounts/acct_123'));
    for (const page of [...paths, '/keys/', '/usage?model=deepshi-sketch&status=settled']) {
      const response = await fetch(`${server.url}${page}`);
      assert.equal(response.status, 200, page);
      assert.match(response.headers.get('content-type') ?? '', /^text\/html/, page);
      assert.equal(response.headers.get('content-security-policy'), DASHBOARD_CSP, page);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(response.headers.get('x-frame-options'), 'DENY');
      assert.equal(response.headers.get('cache-control'), 'no-cache', 'the page is revalidated, so a new build is picked up');
      const html = await response.text();
      assert.match(html, /<div id="app"><\/div>/);
      const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
      assert.ok(scripts.length > 0);
      for (const [, attributes, body] of scripts) {
        assert.match(attributes, /\bsrc="\/assets\/[^"]+\.js"/, 'every script is a file of this server');
        assert.equal(body.trim(), '', 'no inline script');
      }
      assert.doesNotMatch(html, /<style\b|\sstyle=|\son[a-z]+=/i, 'no inline style or event handler attribute');
      assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'nothing from another host');
    }
    assert.match(DASHBOARD_CSP, /script-src 'self'(;|$)/);
    assert.doesNotMatch(DASHBOARD_CSP, /unsafe-inline|unsafe-eval|\*/);
  });

  it('serves the hashed bundles with long caching, and only files that exist', async () => {
    const html = await (await fetch(`${server.url}/`)).text();
    const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((match) => match[1]);
    assert.ok(assets.some((asset) => asset.endsWith('.js')) && assets.some((asset) => asset.endsWith('.css')));
    for (const asset of assets) {
      const response = await fetch(`${server.url}${asset}`);
      assert.equal(response.status, 200, asset);
      assert.equal(response.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.match(response.headers.get('content-type') ?? '', asset.endsWith('.js') ? /javascript/ : /text\/css/);
      assert.ok((await response.arrayBuffer()).byteLength > 0);
    }
    for (const missing of ['/assets/nope.js', '/index.html', '/../package.json', '/%2e%2e/package.json', '/assets/']) {
      const response = await fetch(`${server.url}${missing}`);
      assert.equal(response.status, 404, missing);
      assert.equal((await response.json()).error.code, 'unknown_url');
    }
  });

  it('never shadows the API: unknown /v1, /dashboard/api and /admin paths stay JSON 404 envelopes; health and the API answer as before', async () => {
    for (const apiPath of [
      '/v1/nope',
      '/v1',
      '/v1/models/extra/deep',
      '/dashboard/api/nope',
      '/admin/v1/nope',
      '/metrics',
      '/keysx',
      '/overview/extra',
    ]) {
      const response = await fetch(`${server.url}${apiPath}`, { headers: { accept: 'text/html' } });
      assert.ok([401, 404].includes(response.status), `${apiPath} → ${response.status}`);
      assert.match(response.headers.get('content-type') ?? '', /^application\/json/, apiPath);
      assert.equal(response.headers.get('content-security-policy'), null);
      const body = await response.json();
      assert.equal(typeof body.error.message, 'string', apiPath);
    }
    assert.deepEqual(await (await fetch(`${server.url}/healthz`)).json(), { status: 'ok' });
    const models = await fetch(`${server.url}/v1/models`);
    assert.equal(models.status, 401);
    assert.match(models.headers.get('content-type') ?? '', /^application\/json/);
    // A write to a page path is not a page: the envelope says which methods the path takes.
    const post = await fetch(`${server.url}/keys`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal((await post.json()).error.code, 'method_not_allowed');
  });

  it('without a build, the page paths say how to build it, and the API is unaffected', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-no-dashboard-'));
    const routes = new Map<string, Set<string>>();
    const app = Fastify();
    app.addHook('onRoute', (route) => {
      const set = routes.get(route.url) ?? new Set<string>();
      for (const method of [route.method].flat()) set.add(method);
      routes.set(route.url, set);
    });
    installErrorHandling(app, () => routes);
    registerDashboard(app, { dir: empty });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const page = await fetch(`${url}/`);
      assert.equal(page.status, 503);
      assert.match(page.headers.get('content-type') ?? '', /^text\/plain/);
      assert.match(await page.text(), /dashboard is not built[\s\S]*npm run build:dashboard/);
      const api = await fetch(`${url}/v1/nope`);
      assert.equal(api.status, 404);
      assert.equal((await api.json()).error.code, 'unknown_url');
    } finally {
      await app.close();
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });
});
