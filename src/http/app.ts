import { randomUUID } from 'node:crypto';
import cookie from '@fastify/cookie';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics/metrics.ts';
import type { ChatCompletionService } from '../services/chat-completion.ts';
import type { ImageGenerationService } from '../services/image-generation.ts';
import type { ModelAccess } from '../services/model-access.ts';
import type { AccountService } from '../services/accounts.ts';
import type { CorsOrigins } from '../config/config.ts';
import { registerAuthentication } from './authenticate.ts';
import { registerClosingAnswer } from './closing.ts';
import { registerCors } from './cors.ts';
import { registerDashboard } from './dashboard-static.ts';
import { clientErrorHandler, installErrorHandling, noteReceiving } from './error-handler.ts';
import { registerAccountRoutes } from './routes/account.ts';
import { registerChatRoutes } from './routes/chat.ts';
import { registerEditRoutes, type EditLimits } from './routes/edits.ts';
import { registerAdminRoutes } from './routes/admin.ts';
import { registerImageRoutes } from './routes/images.ts';
import { registerJobRoutes, registerWebhookAdminRoutes } from './routes/jobs.ts';
import type { HostedAnswers } from '../services/jobs/hosted-answers.ts';
import type { HostedFiles } from '../services/jobs/hosted-files.ts';
import type { JobService } from '../services/jobs/job-service.ts';
import type { WebhookService } from '../services/jobs/webhooks.ts';
import { registerMetrics } from './routes/metrics.ts';
import { registerModelRoutes } from './routes/models.ts';
import { registerAdminConsoleRoutes } from './routes/admin-console.ts';
import { registerDashboardRoutes } from './routes/dashboard.ts';
import { registerOpenApiRoute } from './routes/openapi.ts';
import { registerQuoteRoutes } from './routes/quote.ts';
import { assertSameOrigin, currentSession } from './dashboard-session.ts';
import type { CreditCodes } from '../services/credit-codes.ts';
import type { DashboardQueries } from '../services/dashboard-queries.ts';
import type { DashboardUsers } from '../services/dashboard-users.ts';
import type { OperatorConsole } from '../services/operator-console.ts';

export interface AppDeps {
  images: ImageGenerationService;
  chat: ChatCompletionService;
  /** Which models a key may call, image and text alike (GET /v1/models). */
  models: ModelAccess;
  accounts: AccountService;
  logger: Logger;
  adminToken: string | undefined;
  metrics: Metrics;
  /** Enables GET /metrics behind this Bearer token; undefined = no /metrics route. */
  metricsToken: string | undefined;
  keepaliveIntervalMs: number;
  bodyLimitBytes: number;
  /** Longest the server waits to receive a whole request, headers and body (0 = no limit). */
  requestTimeoutMs: number;
  /** Browser origins allowed on /v1 (see cors.ts). */
  corsOrigins: CorsOrigins;
  /** Upload limits of POST /v1/images/edits. */
  editLimits: EditLimits;
  /** /readyz: resolves when the database answers. */
  pingStore: () => Promise<unknown>;
  /** Async image jobs, hosted results and webhooks (docs/jobs.md). */
  jobs?: { service: JobService; files: HostedFiles; webhooks: WebhookService; pollMs: number; hostedAnswers?: HostedAnswers };
  /** false once shutdown began: /readyz answers 503 so the load balancer stops sending traffic. */
  isReady: () => boolean;
  /** The built dashboard served at / (default: dashboard/dist in this checkout). */
  dashboardDir?: string;
  /** The dashboard's services (docs/dashboard.md). */
  dashboard: { users: DashboardUsers; queries: DashboardQueries; creditCodes: CreditCodes; console: OperatorConsole; version: string };
  /** Honour X-Forwarded-For/-Proto/-Host (DEEPSHI_TRUST_PROXY): the client IP for throttling, HTTPS for Secure cookies. */
  trustProxy: boolean;
}

/** What a request log line says about the request: method, URL with query values replaced, and the peer. */
export function requestForLog(request: { method: string; url: string; ip?: string; socket?: { remotePort?: number } }) {
  return { method: request.method, url: urlForLog(request.url), remoteAddress: request.ip, remotePort: request.socket?.remotePort };
}

/** `/v1/models?api_key=sk-bf-…&limit=5` → `/v1/models?api_key=[redacted]&limit=[redacted]`; key-looking path parts redacted too. */
export function urlForLog(url: string): string {
  const mark = url.indexOf('?');
  // A key pasted into the path (`/v1/sk-bf-…`) is as secret as one in the query.
  const path = (mark < 0 ? url : url.slice(0, mark)).replace(/(sk|key|token|bearer)[-_][A-Za-z0-9._~-]{6,}/gi, '[redacted]');
  if (mark < 0) return path;
  const names = url
    .slice(mark + 1)
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const name = pair.split('=')[0];
      return `${name.length > 64 || /[^\w.~%[\]-]/.test(name) ? '[name]' : name}=[redacted]`;
    });
  return `${path}?${names.join('&')}`;
}

const newRequestId = () => `req_${randomUUID().replace(/-/g, '')}`;

export function buildApp(deps: AppDeps): FastifyInstance {
  const requestTimeout = deps.requestTimeoutMs;
  const app: FastifyInstance = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimitBytes,
    // Our own ids; a client-supplied x-request-id is not trusted as a ledger key.
    genReqId: newRequestId,
    requestIdHeader: false,
    // Node's requestTimeout bounds receiving a request (headers and body), so a client trickling an upload cannot
    // hold a connection and a parser forever; answering takes as long as it takes (upstream calls can take minutes,
    // bounded by the generation timeout). On expiry the client gets a 408 envelope (clientErrorHandler).
    requestTimeout, // Fastify sets it on the server it created; Node reads the `http` options below when creating it
    http: {
      requestTimeout,
      // Headers alone get Node's usual 60 s at most, as before when the limit is off; Node requires headersTimeout <= requestTimeout.
      headersTimeout: requestTimeout > 0 ? Math.min(60_000, requestTimeout) : 60_000,
      // How often Node looks for expired requests (its default, 30 s, would let a 60 s limit run to 90 s).
      connectionsCheckingInterval: requestTimeout > 0 ? Math.min(1000, Math.ceil(requestTimeout / 10)) : 30_000,
    },
    clientErrorHandler: clientErrorHandler({ logger: deps.logger, newRequestId, requestTimeoutMs: requestTimeout }),
    // Keep sockets longer than typical LB idle timeouts.
    keepAliveTimeout: 75_000,
    // A request arriving while closing gets our own 503 envelope instead (closing.ts).
    return503OnClosing: false,
    routerOptions: { ignoreTrailingSlash: true },
    trustProxy: deps.trustProxy,
  }) as unknown as FastifyInstance;

  // Request logs carry the path and the names of query parameters, never their values: callers put keys and tokens
  // there (`?api_key=sk-bf-…`, `?token=…`), and nothing from a request's headers (Authorization) is logged at all.
  app.setChildLoggerFactory((logger, bindings, options) =>
    logger.child(bindings, { ...options, serializers: { ...options.serializers, req: requestForLog } }),
  );

  const routes = new Map<string, Set<string>>();
  app.addHook('onRoute', (route) => {
    // The CORS preflight catch-all (`OPTIONS *`) is not an endpoint: counting it would turn every 404 into a 405.
    if (route.url === '*' || route.url === '/*') return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const set = routes.get(route.url) ?? new Set<string>();
    for (const method of methods) set.add(method);
    routes.set(route.url, set);
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    noteReceiving(request, reply);
  });
  installErrorHandling(app, () => routes);
  registerCors(app, deps.corsOrigins);
  // After CORS's onRequest hook (the plugin loads first), so the refusal carries its headers.
  app.after(() => registerClosingAnswer(app));
  registerMetrics(app, { metrics: deps.metrics, token: deps.metricsToken });
  // JSON endpoints take JSON only: a text/plain body is a 415 with a clear message, not a confusing 400.
  app.removeContentTypeParser('text/plain');
  // An empty body sent as application/json (`curl -X POST -H 'Content-Type: application/json'`, many HTTP helpers)
  // is `{}`: endpoints whose body is optional (key rotate/revoke) just work, the others name what is missing.
  // Anything else goes to Fastify's own parser (prototype-poisoning protection included).
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, {});
    return parseJson(request, text, done);
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    if (!deps.isReady()) return reply.code(503).send({ status: 'shutting_down' });
    await deps.pingStore();
    return { status: 'ready' };
  });

  const authenticate = registerAuthentication(app, deps.accounts);
  const imageDeps = {
    images: deps.images,
    metrics: deps.metrics,
    authenticate,
    keepaliveIntervalMs: deps.keepaliveIntervalMs,
    jobs: deps.jobs?.service,
    hostedAnswers: deps.jobs?.hostedAnswers,
  };
  registerImageRoutes(app, imageDeps);
  registerEditRoutes(app, { ...imageDeps, limits: deps.editLimits });
  registerChatRoutes(app, { chat: deps.chat, metrics: deps.metrics, authenticate, keepaliveIntervalMs: deps.keepaliveIntervalMs });
  registerModelRoutes(app, { models: deps.models, authenticate });
  registerAccountRoutes(app, { accounts: deps.accounts, authenticate });
  registerQuoteRoutes(app, { images: deps.images, authenticate, jobs: deps.jobs?.service, limits: deps.editLimits });
  const jobs = deps.jobs;
  if (jobs) {
    registerJobRoutes(app, {
      jobs: jobs.service,
      files: jobs.files,
      authenticate,
      keepaliveIntervalMs: deps.keepaliveIntervalMs,
      pollMs: jobs.pollMs,
    });
  }
  registerOpenApiRoute(app, deps.dashboard.version);
  void app.register(cookie);
  const { users } = deps.dashboard;
  registerDashboardRoutes(app, { ...deps.dashboard, models: deps.models });
  if (deps.adminToken) {
    registerAdminRoutes(app, {
      accounts: deps.accounts,
      adminToken: deps.adminToken,
      operatorSession: async (request) => {
        const session = await currentSession(request, users);
        if (session?.role !== 'operator') return false;
        assertSameOrigin(request);
        return true;
      },
      extraRoutes: (admin) => {
        registerAdminConsoleRoutes(admin, { accounts: deps.accounts, ...deps.dashboard });
        if (jobs) registerWebhookAdminRoutes(admin, { webhooks: jobs.webhooks, accounts: deps.accounts });
      },
    });
  }
  registerDashboard(app, { dir: deps.dashboardDir });
  return app;
}
