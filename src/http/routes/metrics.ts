import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify';
import { GatewayError } from '../../domain/errors.ts';
import type { Metrics } from '../../metrics/metrics.ts';

/**
 * Counts every answered request under its route pattern (never the raw URL) and, when a token is configured, serves
 * GET /metrics behind it. Call before any route is registered: each route gets its own onResponse hook with its
 * series bound at registration, so counting a request is two Map lookups and an increment.
 */
export function registerMetrics(app: FastifyInstance, deps: { metrics: Metrics; token: string | undefined }): void {
  app.addHook('onRoute', (route: RouteOptions) => {
    const series = deps.metrics.httpRoute(route.url);
    const count = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
      series.count(request.method, reply.statusCode);
      done();
    };
    route.onResponse = [
      ...(route.onResponse === undefined ? [] : Array.isArray(route.onResponse) ? route.onResponse : [route.onResponse]),
      count,
    ];
  });
  // No route matched (404, 405): one series whatever the URL, so junk URLs cannot grow the label set.
  const unmatched = deps.metrics.httpRoute('unmatched');
  app.addHook('onResponse', (request, reply, done) => {
    if (request.is404) unmatched.count(request.method, reply.statusCode);
    done();
  });

  if (deps.token === undefined) return; // no /metrics at all: it reveals which models are used, and how much
  const expected = digest(deps.token);
  app.get('/metrics', async (request, reply) => {
    const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '');
    // Digests, so the comparison is constant-time whatever the lengths.
    if (!match || !timingSafeEqual(digest(match[1]), expected)) {
      reply.header('www-authenticate', 'Bearer');
      throw new GatewayError('This endpoint needs the metrics token: Authorization: Bearer $DEEPSHI_METRICS_TOKEN.', {
        status: 401,
        type: 'invalid_request_error',
        code: 'invalid_metrics_token',
      });
    }
    const { contentType, body } = await deps.metrics.scrape();
    return reply.type(contentType).send(body);
  });
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
