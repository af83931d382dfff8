import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { GatewayError, internalError } from '../domain/errors.ts';

/** Statuses the OpenAI SDKs would retry; anything else is terminal and says so with x-should-retry: false. */
const RETRYABLE = new Set([408, 409, 429]);

export function sendError(reply: FastifyReply, error: GatewayError): FastifyReply {
  reply.code(error.status);
  for (const [name, value] of Object.entries(error.headers)) reply.header(name, value);
  if (shouldNotRetry(error.status)) reply.header('x-should-retry', 'false');
  return reply.type('application/json; charset=utf-8').send(error.toEnvelope());
}

function shouldNotRetry(status: number): boolean {
  return status < 500 && !RETRYABLE.has(status);
}

/** The request each connection is receiving, once routing saw its headers (for its id, and whether it was answered). */
const receiving = new WeakMap<Socket, { id: string; response: ServerResponse }>();

/** Called from onRequest: remembers the request a later client error on this connection belongs to. */
export function noteReceiving(request: FastifyRequest, reply: FastifyReply): void {
  receiving.set(request.raw.socket, { id: request.id, response: reply.raw });
}

/**
 * Node's 'clientError' (Fastify's clientErrorHandler): the request was not received in time
 * (ERR_HTTP_REQUEST_TIMEOUT, the server's requestTimeout), or is not valid HTTP. Fastify's default answers with
 * its own JSON shape; this writes the OpenAI envelope instead, then closes the connection (the rest of the
 * request will never be read). As Node does, nothing is written when the request was already answered (an early
 * 401/413 while the client was still uploading): the connection is just closed.
 */
export function clientErrorHandler(options: { logger: Logger; newRequestId: () => string; requestTimeoutMs: number }) {
  const { logger, newRequestId, requestTimeoutMs } = options;
  return (error: NodeJS.ErrnoException, socket: Socket): void => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const current = receiving.get(socket);
    const inFlight = current && !current.response.req.complete ? current : undefined;
    const id = inFlight?.id ?? newRequestId();
    const gatewayError = clientError(error.code, requestTimeoutMs);
    if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT')
      logger.info({ reqId: id, remoteAddress: socket.remoteAddress }, 'request not received in time; connection closed');
    else logger.debug({ reqId: id, err: error }, 'malformed HTTP request; connection closed');
    if (socket.writable && !inFlight?.response.headersSent) {
      const body = JSON.stringify(gatewayError.toEnvelope());
      socket.write(
        `HTTP/1.1 ${gatewayError.status} ${STATUS_CODES[gatewayError.status]}\r\n` +
          'content-type: application/json; charset=utf-8\r\n' +
          `content-length: ${Buffer.byteLength(body)}\r\n` +
          `x-request-id: ${id}\r\n` +
          (shouldNotRetry(gatewayError.status) ? 'x-should-retry: false\r\n' : '') +
          'connection: close\r\n\r\n' +
          body,
      );
    }
    socket.destroy(error);
  };
}

function clientError(code: string | undefined, requestTimeoutMs: number): GatewayError {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT': {
      const allowed =
        requestTimeoutMs > 0
          ? ` (this server allows ${requestTimeoutMs / 1000} second${requestTimeoutMs === 1000 ? '' : 's'} to receive a whole request, headers and body)`
          : '';
      return new GatewayError(
        `The request was not received in time${allowed}; the connection was closed. Retry over a faster connection, or with smaller images.`,
        {
          status: 408,
          type: 'invalid_request_error',
          code: 'request_timeout',
        },
      );
    }
    case 'HPE_HEADER_OVERFLOW':
      return new GatewayError('The request headers are larger than this server accepts.', {
        status: 431,
        type: 'invalid_request_error',
        code: 'headers_too_large',
      });
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new GatewayError('The chunk extensions of the request body are larger than this server accepts.', {
        status: 413,
        type: 'invalid_request_error',
        code: 'request_too_large',
      });
    default:
      return new GatewayError('The request is not valid HTTP/1.1.', { status: 400, type: 'invalid_request_error', code: 'invalid_http' });
  }
}

/** Every non-2xx body is the OpenAI envelope, whatever produced it: our code, Fastify, or a bug. */
export function installErrorHandling(app: FastifyInstance, knownRoutes: () => Map<string, Set<string>>): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof GatewayError) return sendError(reply, error);
    const mapped = mapFastifyError(error);
    if (mapped) return sendError(reply, mapped);
    if (error.code === 'ERR_STREAM_PREMATURE_CLOSE' && (reply.raw.destroyed || request.raw.socket?.destroyed)) {
      // The caller closed its connection before the response body was sent (Fastify reports the abandoned body stream
      // as this error when no header had gone out yet): nothing is wrong with the server, and nothing can be sent.
      request.log.info('the client closed the connection before the response was sent');
      return sendError(reply, internalError());
    }
    if (error.code === 'ECONNRESET' && request.raw.socket?.destroyed) {
      // The connection closed before the request was read (the client left, or DEEPSHI_REQUEST_TIMEOUT_MS cut it off): not a bug.
      request.log.info('connection closed before the request was received');
      return sendError(reply, internalError());
    }
    request.log.error({ err: error }, 'unhandled error');
    return sendError(reply, internalError());
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    const methods = matchMethods(knownRoutes(), path);
    if (methods && !methods.has(request.method)) {
      reply.header('allow', [...methods].join(', '));
      return sendError(
        reply,
        new GatewayError(`${request.method} is not allowed on ${safePath(path)}; use ${[...methods].join(' or ')}.`, {
          status: 405,
          type: 'invalid_request_error',
          code: 'method_not_allowed',
        }),
      );
    }
    return sendError(
      reply,
      new GatewayError(`Unknown request URL: ${request.method} ${safePath(path)}. See the API reference for the available endpoints.`, {
        status: 404,
        type: 'invalid_request_error',
        code: 'unknown_url',
      }),
    );
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
        status: 400,
        type: 'invalid_request_error',
        code: 'invalid_json',
      });
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new GatewayError('The request body is larger than this server accepts.', {
        status: 413,
        type: 'invalid_request_error',
        code: 'request_too_large',
      });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new GatewayError(
        'Unsupported Content-Type. Send application/json (or multipart/form-data for image edits and their quotes).',
        {
          status: 415,
          type: 'invalid_request_error',
          code: 'unsupported_media_type',
        },
      );
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new GatewayError('The Content-Length header does not match the body.', {
        status: 400,
        type: 'invalid_request_error',
        code: 'invalid_body',
      });
  }
  if (error instanceof SyntaxError || (error.statusCode === 400 && /JSON/i.test(error.message))) {
    return new GatewayError('The request body is not valid JSON.', { status: 400, type: 'invalid_request_error', code: 'invalid_json' });
  }
  if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
    return new GatewayError(error.message, { status: error.statusCode, type: 'invalid_request_error', code: 'invalid_request' });
  }
  return undefined;
}
