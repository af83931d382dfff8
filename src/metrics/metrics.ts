import { Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import type { RefusalReason } from '../limits/types.ts';
import { processMetrics } from './process-metrics.ts';

/**
 * Prometheus metrics of one server: one Registry per server (never prom-client's global one), so tests can run
 * several servers in one process. Exposed at GET /metrics only when DEEPSHI_METRICS_TOKEN is set (they reveal
 * which models are used and how much), see docs/scale-out.md.
 *
 * Hot path: every series is a child bound once (per route, model, provider or reason) and kept, so recording is a
 * Map lookup and prom-client's own inc/observe: no label objects built per request, nothing awaited.
 * Cardinality: label values come only from bounded sets (route patterns, catalog model ids, adapter names,
 * fixed outcome lists, HTTP methods and statuses); anything a client typed becomes "unmatched" or "unknown".
 */

export type ImageEndpoint = 'images.generations' | 'images.edits';
export type ImageRequestOutcome = 'success' | 'partial' | 'failed' | 'refused' | 'rejected';
export type UpstreamCallResult = 'ok' | 'retried' | 'failed_over' | 'error';
/** success: answered and charged (whatever the finish reason); failed: the model failed, nothing charged; rejected: before the hold. */
export type ChatRequestOutcome = 'success' | 'failed' | 'rejected';
export type TokenKind = 'prompt' | 'cached_prompt' | 'completion';

const ENDPOINTS: readonly ImageEndpoint[] = ['images.generations', 'images.edits'];
const OUTCOMES: readonly ImageRequestOutcome[] = ['success', 'partial', 'failed', 'refused', 'rejected'];
const UPSTREAM_RESULTS: readonly UpstreamCallResult[] = ['ok', 'retried', 'failed_over', 'error'];
const CHAT_OUTCOMES: readonly ChatRequestOutcome[] = ['success', 'failed', 'rejected'];
const TOKEN_KINDS: readonly TokenKind[] = ['prompt', 'cached_prompt', 'completion'];
const LIMITS: readonly RefusalReason[] = [
  'requests',
  'images',
  'images_over_limit',
  'tokens',
  'tokens_over_limit',
  'in_flight',
  'model_concurrency',
];

/** Image calls take from a fraction of a second (offline, cached) to minutes (large sizes, slow upstreams). */
const GENERATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 45, 60, 90, 120, 180, 240, 300];

type Child = Counter.Internal;
type RequestSeries = Record<ImageEndpoint, Record<ImageRequestOutcome, Child>>;
interface ChatSeries {
  requests: Record<ChatRequestOutcome, Child>;
  tokens: Record<TokenKind, Child>;
  credits: Child;
}
interface GenerationSeries {
  requests: RequestSeries;
  images: Child;
  credits: Child;
  duration: Histogram.Internal<'model'>;
}

/** The per-route series of deepshi_http_requests_total; methods and statuses bound on first use. */
export class HttpRouteSeries {
  private readonly byMethod = new Map<string, Map<number, Child>>();

  constructor(
    private readonly counter: Counter<'route' | 'method' | 'status'>,
    private readonly route: string,
  ) {}

  count(method: string, status: number): void {
    let byStatus = this.byMethod.get(method);
    if (!byStatus) {
      byStatus = new Map();
      this.byMethod.set(method, byStatus);
    }
    let child = byStatus.get(status);
    if (!child) {
      child = this.counter.labels(this.route, method, String(status));
      byStatus.set(status, child);
    }
    child.inc();
  }
}

export class Metrics {
  readonly registry = new Registry();
  /** Route pattern → series; "unmatched" for anything no route matched. */
  private readonly routes = new Map<string, HttpRouteSeries>();
  private readonly models = new Map<string, GenerationSeries>();
  private readonly unknownModel: RequestSeries;
  private readonly textModels = new Map<string, ChatSeries>();
  private readonly unknownTextModel: Record<ChatRequestOutcome, Child>;
  private readonly providers = new Map<string, Record<UpstreamCallResult, Child>>();
  private readonly refusals: Record<RefusalReason, Child>;

  private readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  private readonly imageRequests: Counter<'model' | 'endpoint' | 'outcome'>;
  private readonly imagesGenerated: Counter<'model'>;
  private readonly generationDuration: Histogram<'model'>;
  private readonly upstreamCalls: Counter<'provider' | 'result'>;
  private readonly creditsCharged: Counter<'model'>;
  private readonly chatRequests: Counter<'model' | 'outcome'>;
  private readonly chatTokens: Counter<'model' | 'kind'>;
  private readonly holdsInFlight: Gauge;
  private readonly degraded: Counter;

  /** `models` / `textModels`: the catalog's image and text ids; their series start at 0 so rates are right from the first request. */
  private webhookAttempts: Counter | undefined;

  constructor(options: { models?: readonly string[]; textModels?: readonly string[] } = {}) {
    const registers = [this.registry];
    this.httpRequests = new Counter({
      name: 'deepshi_http_requests_total',
      help: 'HTTP requests answered, by route pattern ("unmatched" when none matched), method and status.',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.imageRequests = new Counter({
      name: 'deepshi_image_requests_total',
      help: 'Image requests by catalog model ("unknown" before one was resolved), endpoint and outcome: success, partial (fewer images than asked), failed (upstream error, timeout, cancelled), refused (content policy), rejected (before the hold: auth, validation, limits, credit).',
      labelNames: ['model', 'endpoint', 'outcome'],
      registers,
    });
    this.imagesGenerated = new Counter({
      name: 'deepshi_images_generated_total',
      help: 'Images delivered (and charged).',
      labelNames: ['model'],
      registers,
    });
    this.generationDuration = new Histogram({
      name: 'deepshi_generation_duration_seconds',
      help: 'From hold to settlement, for requests that delivered at least one image.',
      labelNames: ['model'],
      buckets: GENERATION_BUCKETS,
      registers,
    });
    this.upstreamCalls = new Counter({
      name: 'deepshi_upstream_calls_total',
      help: 'Upstream call attempts by provider and result: ok, retried (same route again), failed_over (next route), error (the call failed).',
      labelNames: ['provider', 'result'],
      registers,
    });
    // A counter is a float64: charged nanos stay exact up to 2^53 (about 9 million USD per model per process
    // lifetime); beyond that increments round to the nearest representable value. The ledger is the exact record.
    this.creditsCharged = new Counter({
      name: 'deepshi_credits_charged_nanos_total',
      help: 'Credits charged, in nano-USD (1e-9 USD).',
      labelNames: ['model'],
      registers,
    });
    this.holdsInFlight = new Gauge({
      name: 'deepshi_holds_in_flight',
      help: 'Generations on this instance holding credit right now.',
      registers,
    });
    const rateLimitRejections = new Counter({
      name: 'deepshi_rate_limit_rejections_total',
      help: 'Requests refused by a rate limit (429), by the limit that refused them.',
      labelNames: ['limit'],
      registers,
    });
    this.degraded = new Counter({
      name: 'deepshi_rate_limit_degraded_total',
      help: 'Admissions decided by the per-instance fallback because the shared (Redis) backend failed.',
      registers,
    });

    this.refusals = Object.fromEntries(
      LIMITS.map((limit) => {
        const child = rateLimitRejections.labels(limit);
        child.inc(0);
        return [limit, child];
      }),
    ) as Metrics['refusals'];
    this.chatRequests = new Counter({
      name: 'deepshi_chat_requests_total',
      help: 'Chat completion requests by catalog model ("unknown" before one was resolved) and outcome: success (answered and charged, whatever the finish reason), failed (model error, timeout, cancelled; nothing charged), rejected (before the hold: auth, validation, limits, credit).',
      labelNames: ['model', 'outcome'],
      registers,
    });
    this.chatTokens = new Counter({
      name: 'deepshi_chat_tokens_total',
      help: 'Tokens billed on chat completions, by model and kind (prompt includes cached_prompt).',
      labelNames: ['model', 'kind'],
      registers,
    });
    this.unknownModel = this.requestSeries('unknown');
    this.unknownTextModel = this.chatOutcomeSeries('unknown');
    for (const model of options.models ?? []) this.model(model);
    for (const model of options.textModels ?? []) this.textModel(model);

    // Process metrics (event-loop lag, heap, GC, CPU…) describe the process, not a server: collected once per process
    // and registered in every server's registry.
    for (const metric of processMetrics().getMetricsAsArray()) this.registry.registerMetric(metric as unknown as Metric);
  }

  /** The series of one route pattern; bound once per route at registration. */
  httpRoute(pattern: string): HttpRouteSeries {
    let series = this.routes.get(pattern);
    if (!series) {
      series = new HttpRouteSeries(this.httpRequests, pattern);
      this.routes.set(pattern, series);
    }
    return series;
  }

  /** A request's outcome; `model` must be a catalog id (the resolved model, never what the client typed). */
  imageRequest(model: string, endpoint: ImageEndpoint, outcome: ImageRequestOutcome): void {
    this.model(model).requests[endpoint][outcome].inc();
  }

  /**
   * A request turned away before its hold. `requested` is what the client sent: it becomes a label only when it is
   * one of the catalog's ids, otherwise "unknown".
   */
  imageRejected(requested: unknown, endpoint: ImageEndpoint): void {
    const series = typeof requested === 'string' ? this.models.get(requested)?.requests : undefined;
    (series ?? this.unknownModel)[endpoint].rejected.inc();
  }

  /** A request that delivered images and was charged for them (`partial` when fewer than asked). */
  imageDelivered(model: string, endpoint: ImageEndpoint, partial: boolean, images: number, cost: bigint, seconds: number): void {
    const series = this.model(model);
    series.requests[endpoint][partial ? 'partial' : 'success'].inc();
    series.images.inc(images);
    if (cost > 0n) series.credits.inc(Number(cost));
    series.duration.observe(seconds);
  }

  /** A chat completion answered and charged: its tokens and cost. */
  chatCompleted(model: string, tokens: { prompt: number; cachedPrompt: number; completion: number }, cost: bigint): void {
    const series = this.textModel(model);
    series.requests.success.inc();
    series.tokens.prompt.inc(tokens.prompt);
    series.tokens.cached_prompt.inc(tokens.cachedPrompt);
    series.tokens.completion.inc(tokens.completion);
    if (cost > 0n) series.credits.inc(Number(cost));
  }

  /** A chat completion whose model failed after the hold (nothing charged). */
  chatFailed(model: string): void {
    this.textModel(model).requests.failed.inc();
  }

  /** A chat request turned away before its hold; `requested` becomes a label only when it is a text model's catalog id. */
  chatRejected(requested: unknown): void {
    const series = typeof requested === 'string' ? this.textModels.get(requested)?.requests : undefined;
    (series ?? this.unknownTextModel).rejected.inc();
  }

  upstreamCall(provider: string, result: UpstreamCallResult): void {
    let series = this.providers.get(provider);
    if (!series) {
      const bound = Object.fromEntries(UPSTREAM_RESULTS.map((name) => [name, this.upstreamCalls.labels(provider, name)]));
      series = bound as Record<UpstreamCallResult, Child>;
      this.providers.set(provider, series);
    }
    series[result].inc();
  }

  holdTaken(): void {
    this.holdsInFlight.inc();
  }

  holdResolved(): void {
    this.holdsInFlight.dec();
  }

  rateLimitRejected(limit: RefusalReason): void {
    this.refusals[limit].inc();
  }

  rateLimitDegraded(): void {
    this.degraded.inc();
  }

  /** A webhook delivery attempt ended: succeeded, retry (scheduled again) or failed (given up, or 410). */
  webhookAttempt(outcome: 'succeeded' | 'retry' | 'failed'): void {
    this.webhookAttempts ??= new Counter({
      name: 'deepshi_webhook_attempts_total',
      help: 'Webhook delivery attempts by outcome: succeeded, retry (scheduled again), failed (given up, or 410).',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.webhookAttempts.labels(outcome).inc();
  }

  /**
   * Async jobs as the store sees them (every instance's, read at scrape time): jobs by status, the queue's depth and
   * the age of its oldest job, webhook deliveries by status.
   */
  observeJobs(
    jobStats: () => Promise<{ byStatus: Record<string, number>; oldestQueuedAt: number | null }>,
    deliveryStats: () => Promise<Record<string, number>>,
  ): void {
    const registers = [this.registry];
    new Gauge({
      name: 'deepshi_jobs',
      help: 'Async image jobs in the store by status.',
      labelNames: ['status'],
      registers,
      async collect() {
        const stats = await jobStats();
        for (const [status, count] of Object.entries(stats.byStatus)) this.labels(status).set(count);
        queueAge = stats.oldestQueuedAt === null ? 0 : (Date.now() - stats.oldestQueuedAt) / 1000;
        queueDepth = stats.byStatus.queued ?? 0;
      },
    });
    let queueDepth = 0;
    let queueAge = 0;
    new Gauge({
      name: 'deepshi_job_queue_depth',
      help: 'Jobs waiting to run (as of the last deepshi_jobs collection).',
      registers,
      collect() {
        this.set(queueDepth);
      },
    });
    new Gauge({
      name: 'deepshi_job_queue_oldest_age_seconds',
      help: 'Age of the oldest queued job (0 when none).',
      registers,
      collect() {
        this.set(queueAge);
      },
    });
    new Gauge({
      name: 'deepshi_webhook_deliveries',
      help: 'Webhook deliveries in the store by status: pending, succeeded, failed.',
      labelNames: ['status'],
      registers,
      async collect() {
        for (const [status, count] of Object.entries(await deliveryStats())) this.labels(status).set(count);
      },
    });
  }

  /** The text exposition (Prometheus 0.0.4) and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** A catalog model's series, bound on first use (callers pass catalog ids only: that bounds the label). */
  private model(id: string): GenerationSeries {
    let series = this.models.get(id);
    if (!series) {
      const images = this.imagesGenerated.labels(id);
      const credits = this.creditsCharged.labels(id);
      images.inc(0);
      credits.inc(0);
      series = { requests: this.requestSeries(id), images, credits, duration: this.generationDuration.labels(id) };
      this.models.set(id, series);
    }
    return series;
  }

  /** A text model's series, bound on first use (catalog ids only). */
  private textModel(id: string): ChatSeries {
    let series = this.textModels.get(id);
    if (!series) {
      const tokens = Object.fromEntries(
        TOKEN_KINDS.map((kind) => {
          const child = this.chatTokens.labels(id, kind);
          child.inc(0);
          return [kind, child];
        }),
      ) as Record<TokenKind, Child>;
      const credits = this.creditsCharged.labels(id);
      credits.inc(0);
      series = { requests: this.chatOutcomeSeries(id), tokens, credits };
      this.textModels.set(id, series);
    }
    return series;
  }

  private chatOutcomeSeries(model: string): Record<ChatRequestOutcome, Child> {
    return Object.fromEntries(
      CHAT_OUTCOMES.map((outcome) => {
        const child = this.chatRequests.labels(model, outcome);
        child.inc(0);
        return [outcome, child];
      }),
    ) as Record<ChatRequestOutcome, Child>;
  }

  private requestSeries(model: string): RequestSeries {
    const byEndpoint = {} as RequestSeries;
    for (const endpoint of ENDPOINTS) {
      byEndpoint[endpoint] = {} as Record<ImageRequestOutcome, Child>;
      for (const outcome of OUTCOMES) {
        const child = this.imageRequests.labels(model, endpoint, outcome);
        child.inc(0);
        byEndpoint[endpoint][outcome] = child;
      }
    }
    return byEndpoint;
  }
}
