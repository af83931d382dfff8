import type { FastifyInstance, FastifyRequest } from 'fastify';
import { invalidRequest } from '../../domain/errors.ts';
import { usdNumber } from '../../domain/money.ts';
import type { PreparedImageRequest } from '../../services/image-generation.ts';
import type { Authenticate } from '../authenticate.ts';
import { prepareEditUpload, refuseDeclaredOversize, registerEditMultipart, type EditUploadDeps } from '../edit-upload.ts';

/**
 * POST /v1/images/quote (docs/dashboard.md): the price of a generation or an edit before making it.
 * - JSON: the body of POST /v1/images/generations, through the generation's own prepare().
 * - multipart/form-data: the body of POST /v1/images/edits, read by the edit's own upload path (src/http/edit-upload.ts:
 *   same limits, same checks, same errors, authenticated before the upload is read) and priced with its reference
 *   images.
 * Either way the answer is the very amount that request would hold. Nothing is held, charged, stored or counted
 * against rate limits.
 */
export interface QuoteRouteDeps extends EditUploadDeps {
  authenticate: Authenticate;
}

export function registerQuoteRoutes(app: FastifyInstance, deps: QuoteRouteDeps): void {
  const authenticate = deps.authenticate();
  // The edit's multipart parser, in this route's own scope (the other JSON endpoints keep answering 415 to a form).
  void app.register(async (scope) => {
    await registerEditMultipart(scope, deps.limits);
    scope.post(
      '/v1/images/quote',
      {
        // An upload is authenticated and its declared length checked before its body is read, as the edit's is; a JSON
        // body is parsed first, so a malformed one stays a 400 (src/http/authenticate.ts).
        onRequest: async (request) => {
          if (!isUpload(request)) return;
          await authenticate(request);
          refuseDeclaredOversize(request, deps.limits);
        },
        preHandler: async (request) => {
          if (!isUpload(request)) await authenticate(request);
        },
      },
      async (request) => {
        if (request.isMultipart()) return quoteOf((await prepareEditUpload(request, deps)).prepared);
        const body = request.body;
        if (body === null || typeof body !== 'object' || Array.isArray(body)) {
          throw invalidRequest('The request body must be a JSON object with at least "model" and "prompt".', null, 'invalid_body');
        }
        return quoteOf(deps.images.prepare(request.caller, body as Record<string, unknown>, { endpoint: 'images.generations' }));
      },
    );
  });
}

function quoteOf(prepared: PreparedImageRequest) {
  const pricing = prepared.model.compiledPricing;
  return {
    object: 'image.quote',
    model: prepared.model.id,
    cost: { total_cost: usdNumber(prepared.quote.hold) },
    basis: prepared.quote.basis,
    // List-settled prices charge exactly the hold when every image is delivered; token-settled ones charge at most it.
    exact: pricing.unit !== 'token' && pricing.settle === 'list',
  };
}

/** The form's media type, read from the header: the hooks that run before the body is parsed decide by it. */
function isUpload(request: FastifyRequest): boolean {
  return /^\s*multipart\/form-data\s*(;|$)/i.test(request.headers['content-type'] ?? '');
}
