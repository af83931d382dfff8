import type { Catalog, CatalogModel } from '../catalog/catalog.ts';
import { GatewayError, invalidRequest, modelNotFound } from '../domain/errors.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import { isAllowed, type Caller } from '../domain/caller.ts';

export { isAllowed, type Caller };

/**
 * Which catalog models a key may call and the server can serve now, whatever they produce: the one rule every
 * route applies (GET /v1/models, the image endpoints, chat completions).
 */
export class ModelAccess {
  constructor(
    private readonly catalog: Catalog,
    private readonly registry: ProviderRegistry,
  ) {}

  /** Models the server can serve now: what a key without a model allowlist may call (the public models page). */
  offered(): CatalogModel[] {
    return this.catalog.list().filter((model) => this.registry.availability(model).routes.length > 0);
  }

  /** Models this caller may call and the server can serve now. */
  list(caller: Caller): CatalogModel[] {
    return this.offered().filter((model) => isAllowed(caller, model.id));
  }

  /** Resolves a model id for this caller: 400 model_not_found if unknown or unservable, 403 if the key may not use it. */
  resolve(caller: Caller, modelId: unknown): CatalogModel {
    if (modelId === undefined || modelId === null) {
      throw new GatewayError("Missing required parameter: 'model'. See GET /v1/models for the models your key can use.", {
        status: 400,
        type: 'invalid_request_error',
        code: 'missing_required_parameter',
        param: 'model',
      });
    }
    if (typeof modelId !== 'string') throw invalidRequest("'model' must be a string.", 'model', 'invalid_type');
    const model = this.catalog.get(modelId);
    if (!model) throw modelNotFound(400);
    if (this.registry.availability(model).routes.length === 0) throw modelNotFound(400);
    // Authorise the resolved catalog model, in this one function every route calls.
    if (!isAllowed(caller, model.id)) throw modelNotFound(403);
    return model;
  }
}

/** 400 for a model of the wrong kind for the endpoint, pointing at the endpoint that serves it. */
export function wrongEndpoint(model: CatalogModel, endpoint: string): GatewayError {
  const serves =
    model.kind === 'text'
      ? 'a text model: call POST /v1/chat/completions'
      : 'an image model: call POST /v1/images/generations or /v1/images/edits';
  return invalidRequest(`${model.id} is ${serves}; ${endpoint} cannot serve it.`, 'model', 'model_not_supported');
}
