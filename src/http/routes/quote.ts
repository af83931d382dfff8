import type { FastifyInstance } from 'fastify';
import { invalidRequest } from '../../domain/errors.ts';
import { usdNumber } from '../../domain/money.ts';
import type { ImageGenerationService } from '../../services/image-generation.ts';
import type { Authenticate } from '../authenticate.ts';

/**
 * POST /v1/images/quote (docs/dashboard.md): the price of a generation before making it. The body goes through the
 * generation's own prepare() (same model resolution, permissions and validation, so the same errors), and the answer
 * is the very amount that generation would hold. Nothing is held, charged or counted against rate limits.
 */
export function registerQuoteRoutes(app: FastifyInstance, deps: { images: ImageGenerationService; authenticate: Authenticate }): void {
  app.post('/v1/images/quote', { preHandler: deps.authenticate() }, async (request) => {
    const { caller } = request;
    const body = request.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw invalidRequest('The request body must be a JSON object with at least "model" and "prompt".', null, 'invalid_body');
    }
    const prepared = deps.images.prepare(caller, body as Record<string, unknown>, { endpoint: 'images.generations' });
    const pricing = prepared.model.compiledPricing;
    return {
      object: 'image.quote',
      model: prepared.model.id,
      cost: { total_cost: usdNumber(prepared.quote.hold) },
      basis: prepared.quote.basis,
      // List-settled prices charge exactly the hold when every image is delivered; token-settled ones charge at most it.
      exact: pricing.unit !== 'token' && pricing.settle === 'list',
    };
  });
}
