import type { FastifyInstance } from 'fastify';
import { GatewayError } from '../domain/errors.ts';
import { sendError } from './error-handler.ts';

/**
 * Once the server is closing (src/server.ts close(), on SIGTERM), a request that still arrives — on a keep-alive
 * connection the client had open, or pipelined behind one in flight — is refused before any work: 503
 * `server_shutting_down`, the OpenAI envelope, `Retry-After` and `Connection: close`, so the client retries on a
 * new connection (another instance, or this one restarted). This replaces Fastify's own answer
 * (`return503OnClosing`, off in app.ts), whose body is not the envelope and carries no CORS headers.
 * Register it after CORS (app.ts), so a browser caller on /v1 can read this answer like any other.
 */
export function registerClosingAnswer(app: FastifyInstance): void {
  let closing = false;
  // Fastify marks its router closing just before the preClose hooks, and stops listening after them.
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.addHook('onRequest', async (request, reply) => {
    if (!closing) return;
    request.log.info('refused: the server is shutting down');
    reply.header('connection', 'close');
    return sendError(reply, serverClosing());
  });
}

function serverClosing(): GatewayError {
  return new GatewayError('The server is shutting down and did not start this request; nothing was charged. Please retry.', {
    status: 503,
    type: 'api_error',
    code: 'server_shutting_down',
    headers: { 'retry-after': '1' },
  });
}
