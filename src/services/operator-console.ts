import type { Registry } from 'prom-client';
import type { Catalog } from '../catalog/catalog.ts';
import { formatUsd, type Nanos } from '../domain/money.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import type { DashboardStore, ModelMargin } from '../store/dashboard-types.ts';

const DAY_MS = 86_400_000;

/**
 * The operator console's read-outs (docs/dashboard.md): every catalog model with whether it is offered and why not,
 * live figures read from the very counters GET /metrics exposes (this instance's registry), so the two never
 * disagree, and per model what callers paid against what the upstreams billed (from the store, every instance).
 */
export class OperatorConsole {
  private readonly startedAt = Date.now();

  constructor(
    private readonly catalog: Catalog,
    private readonly providers: ProviderRegistry,
    private readonly registry: Registry,
    private readonly store: Pick<DashboardStore, 'modelMargins'>,
  ) {}

  /**
   * Settled requests of the last `days` UTC days (today included), per model: charged, and beside the upstream's bill
   * the charge of exactly the requests whose bill is known, so the margin compares like with like. A margin may be
   * negative (an upstream billed more than the caller paid); it is shown as it is.
   */
  async margins(days: number, now = Date.now()) {
    const since = Math.floor(now / DAY_MS) * DAY_MS - (days - 1) * DAY_MS;
    const rows = await this.store.modelMargins(since);
    const total: Omit<ModelMargin, 'model'> = {
      requests: 0,
      charged: 0n,
      requestsWithUpstreamCost: 0,
      chargedWithUpstreamCost: 0n,
      upstreamCost: 0n,
    };
    for (const row of rows) {
      total.requests += row.requests;
      total.charged += row.charged;
      total.requestsWithUpstreamCost += row.requestsWithUpstreamCost;
      total.chargedWithUpstreamCost += row.chargedWithUpstreamCost;
      total.upstreamCost += row.upstreamCost;
    }
    return {
      object: 'margins',
      days,
      since: since / 1000,
      data: rows.map((row) => ({ model: row.model, ...marginJson(row) })),
      total: marginJson(total),
    };
  }

  models() {
    return {
      object: 'list',
      data: this.catalog.list().map((model) => {
        const availability = this.providers.availability(model);
        return {
          id: model.id,
          kind: model.kind,
          offered: availability.routes.length > 0,
          unavailable_reason: availability.routes.length > 0 ? null : (availability.unavailableReason ?? 'no route'),
          routes: model.routes.map((route) => route.provider),
        };
      }),
    };
  }

  async stats() {
    const metrics = await this.registry.getMetricsAsJSON();
    const byName = new Map(
      metrics.map((metric) => [
        metric.name,
        metric.values as Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>,
      ]),
    );
    const sumBy = (name: string, label: string) => {
      const totals: Record<string, number> = {};
      for (const value of byName.get(name) ?? []) {
        const key = String(value.labels[label]);
        totals[key] = (totals[key] ?? 0) + value.value;
      }
      return totals;
    };
    const total = (name: string) => (byName.get(name) ?? []).reduce((sum, value) => sum + value.value, 0);
    const statuses = sumBy('deepshi_http_requests_total', 'status');
    const errors: Record<string, number> = {};
    for (const [status, count] of Object.entries(statuses)) if (Number(status) >= 400 && count > 0) errors[status] = count;
    return {
      object: 'stats',
      uptime_s: Math.floor((Date.now() - this.startedAt) / 1000),
      http_requests: Object.values(statuses).reduce((sum, count) => sum + count, 0),
      errors,
      image_requests: sumBy('deepshi_image_requests_total', 'outcome'),
      chat_requests: sumBy('deepshi_chat_requests_total', 'outcome'),
      images: total('deepshi_images_generated_total'),
      spend: formatUsd(BigInt(Math.round(total('deepshi_credits_charged_nanos_total')))),
      generation_seconds: histogramQuantiles(byName.get('deepshi_generation_duration_seconds') ?? []),
      holds_in_flight: total('deepshi_holds_in_flight'),
    };
  }
}

/** USD as exact decimal strings; with no upstream bill known, upstream_cost and margin are null rather than a made-up 0. */
function marginJson(figures: Omit<ModelMargin, 'model'>) {
  const known = figures.requestsWithUpstreamCost > 0;
  const usd = (nanos: Nanos) => (known ? formatUsd(nanos) : null);
  return {
    requests: figures.requests,
    charged: formatUsd(figures.charged),
    requests_with_upstream_cost: figures.requestsWithUpstreamCost,
    charged_with_upstream_cost: formatUsd(figures.chargedWithUpstreamCost),
    upstream_cost: usd(figures.upstreamCost),
    margin: usd(figures.chargedWithUpstreamCost - figures.upstreamCost),
  };
}

/** p50/p95/p99 from a Prometheus histogram's cumulative buckets (the upper bound of the bucket reaching the rank). */
function histogramQuantiles(values: Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>) {
  const buckets = new Map<number, number>();
  for (const value of values) {
    if (!value.metricName?.endsWith('_bucket')) continue;
    const bound = value.labels.le === '+Inf' ? Infinity : Number(value.labels.le);
    buckets.set(bound, (buckets.get(bound) ?? 0) + value.value);
  }
  const sorted = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  const count = sorted.at(-1)?.[1] ?? 0;
  if (count === 0) return { count: 0, p50: null, p95: null, p99: null };
  const at = (q: number) => {
    const bound = sorted.find(([, cumulative]) => cumulative >= q * count)?.[0] ?? Infinity;
    return Number.isFinite(bound) ? bound : null;
  };
  return { count, p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}
