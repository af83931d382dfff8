import type { FastifyInstance } from 'fastify';
import { GatewayError, modelNotFound } from '../../domain/errors.ts';
import type { CatalogModel } from '../../catalog/catalog.ts';
import { modelCard } from '../../catalog/model-card.ts';
import type { ModelAccess } from '../../services/model-access.ts';
import type { Authenticate } from '../authenticate.ts';

/** GET /v1/models and /v1/models/{id}: exactly the models this key may call and the server can serve now. */
export function registerModelRoutes(app: FastifyInstance, deps: { models: ModelAccess; authenticate: Authenticate }): void {
  const card = cachedModelCards();

  const authenticated = { preHandler: deps.authenticate() };
  app.get('/v1/models', authenticated, async (request) => {
    return { object: 'list', data: deps.models.list(request.caller).map(card) };
  });

  // A wildcard, so ids with "/" work both percent-encoded (what the SDKs send) and raw.
  app.get('/v1/models/*', authenticated, async (request) => {
    const raw = (request.params as { '*': string })['*'];
    let id: string;
    try {
      id = decodeURIComponent(raw);
    } catch {
      throw modelNotFound(404);
    }
    // A resource route, so an unknown or unservable id is OpenAI's 404 model_not_found (the SDKs' NotFoundError);
    // a generation body naming one stays the spec's 400. Not permitted for this key → 403, as everywhere.
    try {
      return card(deps.models.resolve(request.caller, id));
    } catch (error) {
      if (error instanceof GatewayError && error.code === 'model_not_found' && error.status === 400) throw modelNotFound(404);
      throw error;
    }
  });
}

/** modelCard, built once per model: the same cards for GET /v1/models and the public GET /dashboard/api/models. */
export function cachedModelCards(): (model: CatalogModel) => Record<string, unknown> {
  const cards = new Map<string, Record<string, unknown>>();
  return (model) => {
    let value = cards.get(model.id);
    if (!value) {
      value = modelCard(model);
      cards.set(model.id, value);
    }
    return value;
  };
}
