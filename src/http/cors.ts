import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import type { CorsOrigins } from '../config/config.ts';

/**
 * CORS for the caller API (`/v1/…`), so browser apps can use the OpenAI SDKs (`dangerouslyAllowBrowser`) and fetch.
 * Safe to open to every origin by default: callers authenticate with a Bearer key, never cookies, so a page can only
 * send a key it already holds (OpenAI's API allows any origin the same way). Operators narrow it to a list of origins
 * or turn it off (DEEPSHI_CORS_ORIGINS). Admin and metrics routes are never exposed to browsers.
 */
/** What the SDKs send besides the body: their telemetry headers and OpenAI's organisation/project headers. */
const ALLOWED_HEADERS = [
  'authorization',
  'content-type',
  'idempotency-key',
  'openai-organization',
  'openai-project',
  'openai-beta',
  'x-stainless-arch',
  'x-stainless-lang',
  'x-stainless-os',
  'x-stainless-package-version',
  'x-stainless-retry-count',
  'x-stainless-runtime',
  'x-stainless-runtime-version',
  'x-stainless-timeout',
  'x-stainless-async',
  'x-stainless-helper-method',
  'x-stainless-poll-helper',
  'x-stainless-custom-poll-interval',
];

/** What a browser caller may read: request id, exact cost, warnings, retry guidance, limits and idempotency markers. */
const EXPOSED_HEADERS = [
  'x-request-id',
  'x-request-cost',
  'x-deepshi-warnings',
  'x-should-retry',
  'retry-after',
  'retry-after-ms',
  'x-ratelimit-limit-requests',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-reset-requests',
  'x-ratelimit-limit-images',
  'x-ratelimit-remaining-images',
  'x-ratelimit-reset-images',
  'x-deepshi-limits-degraded',
  'idempotent-replayed',
  'x-deepshi-original-request-id',
];

export function registerCors(app: FastifyInstance, origins: CorsOrigins): void {
  if (origins === false) return;
  void app.register(cors, {
    // Decided per request: only /v1 answers cross-origin callers; everything else gets no CORS headers at all.
    delegator: (request, callback) => {
      const path = request.url ?? '';
      if (!path.startsWith('/v1/') && path !== '/v1') return callback(null, { origin: false });
      callback(null, {
        origin: origins, // '*' is sent as `*`; a list echoes the matching origin (with Vary: Origin)
        methods: ['GET', 'POST', 'OPTIONS'],
        allowedHeaders: ALLOWED_HEADERS,
        exposedHeaders: EXPOSED_HEADERS,
        credentials: false,
        maxAge: 600,
        strictPreflight: false,
      });
    },
  });
}
