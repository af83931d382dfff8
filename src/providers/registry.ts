import type { CatalogModel, ImageCatalogModel, TextCatalogModel } from '../catalog/catalog.ts';
import type { ImageAdapter, ProviderAdapter, RouteTarget, TextAdapter } from './types.ts';

export interface ResolvedRoute<Adapter extends ProviderAdapter = ImageAdapter> {
  adapter: Adapter;
  target: RouteTarget;
}

/** Why a model cannot be served right now (logged at start-up), or undefined when it can. */
export type Availability<Adapter extends ProviderAdapter = ImageAdapter> = { routes: ResolvedRoute<Adapter>[]; unavailableReason?: string };

/**
 * Joins catalog routes with the adapters this build has and the credentials the environment holds.
 * The only place that knows every adapter is the composition root (startServer in src/server.ts, and the CLI), which
 * passes them in.
 * A route's `provider` names an adapter of the model's kind: image adapters serve image models, text adapters
 * text models (so `offline` is the sketch renderer for one and the echo model for the other).
 */
export class ProviderRegistry {
  private readonly imageAdapters = new Map<string, ImageAdapter>();
  private readonly textAdapters = new Map<string, TextAdapter>();
  private readonly env: Readonly<Record<string, string | undefined>>;
  private readonly cache = new Map<string, Availability<ProviderAdapter>>();

  constructor(adapters: ProviderAdapter[], env: Readonly<Record<string, string | undefined>>) {
    for (const adapter of adapters) {
      if (adapter.modality === 'text') this.textAdapters.set(adapter.provider, adapter);
      else this.imageAdapters.set(adapter.provider, adapter);
    }
    this.env = env;
  }

  /** Routes that can serve the model now, in the catalog's priority order. Computed once per model. */
  availability(model: ImageCatalogModel): Availability<ImageAdapter>;
  availability(model: TextCatalogModel): Availability<TextAdapter>;
  availability(model: CatalogModel): Availability<ProviderAdapter>;
  availability(model: CatalogModel): Availability<ProviderAdapter> {
    const cached = this.cache.get(model.id);
    if (cached) return cached;
    const adapters: ReadonlyMap<string, ProviderAdapter> = model.kind === 'text' ? this.textAdapters : this.imageAdapters;
    const routes: ResolvedRoute<ProviderAdapter>[] = [];
    const reasons: string[] = [];
    for (const route of model.routes) {
      const adapter = adapters.get(route.provider);
      if (!adapter) {
        reasons.push(`no "${route.provider}" ${model.kind} adapter in this build`);
        continue;
      }
      const target: RouteTarget = {
        upstreamModel: route.upstream_model,
        baseUrl: (route.base_url_env ? this.read(route.base_url_env) : undefined) ?? route.base_url,
        credential: route.credentials_env ? this.read(route.credentials_env) : undefined,
        options: route.options ?? {},
        maxConnections: route.max_connections,
      };
      if (route.credentials_env && target.credential === undefined) {
        reasons.push(`${route.credentials_env} is not set`);
        continue;
      }
      if (!adapter.isConfigured(target)) {
        reasons.push(`route "${route.provider}" is not configured`);
        continue;
      }
      routes.push({ adapter, target });
    }
    const availability: Availability<ProviderAdapter> = routes.length > 0 ? { routes } : { routes, unavailableReason: reasons.join('; ') };
    this.cache.set(model.id, availability);
    return availability;
  }

  private read(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }
}
