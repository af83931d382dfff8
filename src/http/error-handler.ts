import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { GatewayError, internalError } from '../domain/errors.ts';

/** Statuses the OpenAI SDKs would retry; anything else is terminal and says so with x-should-retry: false. */
const RETRYABLE = new Set([408, 409, 429]);

export function sendError(reply: FastifyReply, error: GatewayError): FastifyReply {
  reply.code(error.status);
  for (const [name, value] of Object.entries(error.headers)) reply.header(name, value);
  if (error.status < 500 && !RETRYABLE.has(error.status)) reply.header('x-should-retry', 'false');
  return reply.type('application/json; charset=utf-8').send(error.toEnvelope());
}

/** Every non-2xx body is the OpenAI envelope, whatever produced it: our code, Fastify, or a bug. */
export function installErrorHandling(app: FastifyInstance, knownRoutes: () => Map<string, Set<string>>): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof GatewayError) return sendError(reply, error);
    const mapped = mapFastifyError(error);
    if (mapped) return sendError(reply, mapped);
    request.log.error({ err: error }, 'unhandled error');
    return sendError(reply, internalError());
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    const methods = matchMethods(knownRoutes(), path);
    if (methods && !methods.has(request.method)) {
      reply.header('allow', [...methods].join(', '));
      return sendError(reply, new GatewayError(`${request.method} is not allowed on ${safePath(path)}; use ${[...methods].join(' or ')}.`, {
        status: 405, type: 'invalid_request_error', code: 'method_not_allowed',
      }));
    }
    return sendError(reply, new GatewayError(`Unknown request URL: ${request.method} ${safePath(path)}. See the API reference for the available endpoints.`, {
      status: 404, type: 'invalid_request_error', code: 'unknown_url',
    }));
  });
}

function safePath(path: string): string {
  return path.length > 200 ? `${path.slice(0, 200)}…` : path;
}

function matchMethods(routes: Map<string, Set<string>>, path: string): Set<string> | undefined {
  for (const [pattern, methods] of routes) {
    const regex = new RegExp(`^${pattern.replace(/:[^/]+/g, '[^/]+').replace(/\*/g, '.*')}$`);
    if (regex.test(path)) return methods;
  }
  return undefined;
}

function mapFastifyError(error: FastifyError): GatewayError | undefined {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new GatewayError('The request body is not valid JSON. Send a JSON object with Content-Type: application/json.', {
        status: 400, type: 'invalid_request_error', code: 'invalid_json',
      });
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new GatewayError('The request body is larger than this server accepts.', {
        status: 413, type: 'invalid_request_error', code: 'request_too_large',
      });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new GatewayError('Unsupported Content-Type. Send application/json (or multipart/form-data for image edits).', {
        status: 415, type: 'invalid_request_error', code: 'unsupported_media_type',
      });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new GatewayError('The Content-Length header does not match the body.', { status: 400, type: 'invalid_request_error', code: 'invalid_body' });
  }
  if (error instanceof SyntaxError || (error.statusCode === 400 && /JSON/i.test(error.message))) {
    return new GatewayError('The request body is not valid JSON.', { status: 400, type: 'invalid_request_error', code: 'invalid_json' });
  }
  if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
    return new GatewayError(error.message, { status: error.statusCode, type: 'invalid_request_error', code: 'invalid_request' });
  }
  return undefined;
}
