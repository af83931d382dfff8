import type { CatalogModel } from '../catalog/catalog.ts';
import type { ImageAdapter, RouteTarget } from './types.ts';

export interface ResolvedRoute {
  adapter: ImageAdapter;
  target: RouteTarget;
}

/** Why a model cannot be served right now (logged at start-up), or undefined when it can. */
export type Availability = { routes: ResolvedRoute[]; unavailableReason?: string };

/**
 * Joins catalog routes with the adapters this build has and the credentials the environment holds.
 * The only place that knows every adapter is the composition root (src/main.ts), which passes them in.
 */
export class ProviderRegistry {
  private readonly adapters: Map<string, ImageAdapter>;
  private readonly env: Readonly<Record<string, string | undefined>>;
  private readonly cache = new Map<string, Availability>();

  constructor(adapters: ImageAdapter[], env: Readonly<Record<string, string | undefined>>) {
    this.adapters = new Map(adapters.map((adapter) => [adapter.provider, adapter]));
    this.env = env;
  }

  /** Routes that can serve the model now, in the catalog's priority order. Computed once per model. */
  availability(model: CatalogModel): Availability {
    const cached = this.cache.get(model.id);
    if (cached) return cached;
    const routes: ResolvedRoute[] = [];
    const reasons: string[] = [];
    for (const route of model.routes) {
      const adapter = this.adapters.get(route.provider);
      if (!adapter) {
        reasons.push(`no "${route.provider}" adapter in this build`);
        continue;
      }
      const target: RouteTarget = {
        upstreamModel: route.upstream_model,
        baseUrl: (route.base_url_env ? this.read(route.base_url_env) : undefined) ?? route.base_url,
        credential: route.credentials_env ? this.read(route.credentials_env) : undefined,
        options: route.options ?? {},
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
    const availability: Availability = routes.length > 0 ? { routes } : { routes, unavailableReason: reasons.join('; ') };
    this.cache.set(model.id, availability);
    return availability;
  }

  private read(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }
}
