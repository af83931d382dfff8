import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';

/** Where `npm run build:dashboard` writes the dashboard (dashboard/vite.config.ts). */
export const DEFAULT_DASHBOARD_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dashboard/dist');

/**
 * The page's only sources are this server: its own scripts, styles, images (plus data:/blob: for generated images
 * and references the playground shows) and its own API. No inline script or style, no framing, no plugins.
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  "form-action 'self'",
].join('; ');

/**
 * The paths the dashboard's router answers (dashboard/src/app.tsx): each serves index.html and the page routes
 * itself. Listed one by one rather than a catch-all, so nothing else — /v1, /admin, /dashboard/api, /healthz,
 * /readyz, /metrics, /openapi.json, or a mistyped API path — can ever be answered by the page instead of its JSON.
 */
export const DASHBOARD_PAGES = [
  '/',
  '/signin',
  '/signup',
  '/overview',
  '/keys',
  '/usage',
  '/credits',
  '/playground',
  '/models',
  '/reference',
  '/settings',
  '/operator',
  '/operator/*',
];

const pageHeaders = (reply: FastifyReply) =>
  reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'same-origin')
    .header('cross-origin-opener-policy', 'same-origin');

/**
 * Serves the built dashboard (dashboard/dist) at /. Files are registered one route each when the server starts
 * (no wildcard), the hashed bundles under /assets/ are cached for a year, index.html is revalidated every time.
 * Without a build, the page paths answer a plain message saying how to build it.
 */
export function registerDashboard(app: FastifyInstance, options: { dir?: string } = {}): void {
  const dir = options.dir ?? DEFAULT_DASHBOARD_DIR;
  const built = fs.existsSync(path.join(dir, 'index.html'));
  if (!built) {
    for (const url of DASHBOARD_PAGES) {
      app.get(url, async (_request, reply) =>
        pageHeaders(reply)
          .code(503)
          .type('text/plain; charset=utf-8')
          .header('cache-control', 'no-store')
          .send(
            'The Deepshi dashboard is not built on this server.\n\n' +
              'Build it with `npm run build:dashboard` (`npm install` does it too), then restart the server.\n' +
              'The API works without it: see /openapi.json and the README.\n',
          ),
      );
    }
    return;
  }

  void app.register(fastifyStatic, {
    root: dir,
    prefix: '/',
    wildcard: false,
    index: false,
    redirect: false,
    serve: true,
    decorateReply: true,
    // index.html is served through the page routes below only, with the page headers.
    allowedPath: (pathName) => pathName !== '/index.html',
    setHeaders: (reply, filePath) => {
      reply.header('x-content-type-options', 'nosniff');
      reply.header('content-security-policy', DASHBOARD_CSP);
      // Bundles have content hashes in their names; index.html names the current ones, so it is always revalidated.
      const hashed = filePath.startsWith(path.join(dir, 'assets') + path.sep);
      const page = path.basename(filePath) === 'index.html';
      reply.header('cache-control', hashed ? 'public, max-age=31536000, immutable' : page ? 'no-cache' : 'public, max-age=300');
    },
  });

  void app.register(async (pages) => {
    for (const url of DASHBOARD_PAGES) {
      pages.get(url, async (_request, reply) =>
        pageHeaders(reply).type('text/html; charset=utf-8').sendFile('index.html', dir, { cacheControl: false }),
      );
    }
  });
}
