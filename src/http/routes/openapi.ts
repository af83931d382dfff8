import type { FastifyInstance } from 'fastify';
import { buildOpenApiDocument } from '../openapi-document.ts';

/** GET /openapi.json: the whole public API (src/http/openapi-document.ts), public, built once at start-up. */
export function registerOpenApiRoute(app: FastifyInstance, version: string): void {
  const body = JSON.stringify(buildOpenApiDocument(version));
  app.get('/openapi.json', async (_request, reply) =>
    reply.header('content-type', 'application/json; charset=utf-8').header('cache-control', 'public, max-age=300').send(body),
  );
}
