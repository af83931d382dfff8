import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { loadCatalogFile, type Catalog } from './catalog/catalog.ts';
import type { Config } from './config/config.ts';
import { parseUsd } from './domain/money.ts';
import { buildApp } from './http/app.ts';
import { builtInAdapters } from './providers/index.ts';
import { ProviderRegistry } from './providers/registry.ts';
import type { ProviderAdapter } from './providers/types.ts';
import { AccountService } from './services/accounts.ts';
import { BilledWorkRunner } from './services/billed-work.ts';
import { ChatCompletionService } from './services/chat-completion.ts';
import { ImageGenerationService } from './services/image-generation.ts';
import { IdempotencyService } from './services/idempotency.ts';
import { ModelAccess } from './services/model-access.ts';
import type { RequestLimiter } from './limits/limiter.ts';
import { openLimiter } from './limits/open-limiter.ts';
import { Metrics } from './metrics/metrics.ts';
import { openStore } from './store/open-store.ts';
import { openJobs, sweepJobs } from './services/jobs/open-jobs.ts';
import { openAttemptCounter } from './limits/attempts.ts';
import { CreditCodes } from './services/credit-codes.ts';
import { DashboardQueries } from './services/dashboard-queries.ts';
import { DashboardUsers } from './services/dashboard-users.ts';
import { OperatorConsole } from './services/operator-console.ts';
import type { Store } from './store/types.ts';

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  store: Store;
  catalog: Catalog;
  metrics: Metrics;
  accounts: AccountService;
  images: ImageGenerationService;
  limiter: RequestLimiter;
  /** The development key, when this start created the development account. */
  devKey: string | undefined;
  /** The development account's dashboard sign-in, made with it (the password is shown once, never stored in clear). */
  devSignIn: { email: string; password: string } | undefined;
  users: DashboardUsers;
  /** Stop accepting, let in-flight generations finish (bounded), settle, close the store. */
  close(): Promise<void>;
}

export interface ServerOptions {
  /** Adapters beyond the built-in ones (tests inject simulators' faults this way). */
  adapters?: ProviderAdapter[];
  logger?: Logger;
  /** Start listening (default true). */
  listen?: boolean;
  /** Install guardProcess (main.ts does; in-process tests leave the process to the test runner). */
  guardProcess?: boolean;
  /** Where the default logger writes (stdout when unset); tests capture it to check what is logged. */
  logStream?: NodeJS.WritableStream;
}

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The composition root: the only place that knows every module. */
export async function startServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  const logOptions: pino.LoggerOptions = {
    level: config.logLevel,
    // Keys and tokens never reach the logs, whatever a future log line includes.
    redact: {
      paths: [
        'req.headers.authorization',
        'headers.authorization',
        '*.key',
        '*.apiKey',
        'prompt',
        '*.prompt',
        // Dashboard secrets: session cookies, passwords, the admin token, credit codes.
        'req.headers.cookie',
        'headers.cookie',
        'res.headers["set-cookie"]',
        '*.password',
        '*.current_password',
        '*.new_password',
        '*.admin_token',
        'password',
      ],
      censor: '[redacted]',
    },
  };
  const logger = options.logger ?? (options.logStream ? pino(logOptions, options.logStream) : pino(logOptions));
  const catalog = loadCatalogFile(config.catalogPath);
  const store = await openStore(config.databaseUrl);
  const adapters: ProviderAdapter[] = [...builtInAdapters(), ...(options.adapters ?? [])];
  const registry = new ProviderRegistry(adapters, config.env);

  const unavailable = catalog.list().flatMap((model) => {
    const reason = registry.availability(model).unavailableReason;
    return reason ? [`${model.id} (${reason})`] : [];
  });
  const available = catalog
    .list()
    .filter((model) => !registry.availability(model).unavailableReason)
    .map((model) => model.id);
  logger.info({ models: available }, `serving ${available.length} model(s)`);
  if (unavailable.length) logger.info(`not offered until configured: ${unavailable.join('; ')}`);

  const accounts = new AccountService(store, config.keyPepper);
  const metrics = new Metrics({
    models: catalog
      .list()
      .filter((model) => model.kind === 'image')
      .map((model) => model.id),
    textModels: catalog
      .list()
      .filter((model) => model.kind === 'text')
      .map((model) => model.id),
  });
  // A request lives at most this long (deadline + grace): its hold expires, its limit slots and idempotency lock lapse.
  const requestLifetimeMs = config.generationTimeoutMs + config.holdGraceMs;
  const limiter = await openLimiter({
    redisUrl: config.redisUrl,
    redisPrefix: config.redisPrefix,
    defaults: config.defaultLimits,
    leaseMs: requestLifetimeMs,
    logger,
    metrics,
  });
  const idempotency = new IdempotencyService({ store, logger, lockMs: requestLifetimeMs });
  const models = new ModelAccess(catalog, registry);
  // One runner for every billed request, so shutdown drains them all and each hold is resolved in one place.
  const runner = new BilledWorkRunner({
    store,
    limiter,
    metrics,
    logger,
    generationTimeoutMs: config.generationTimeoutMs,
    holdGraceMs: config.holdGraceMs,
  });
  const images = new ImageGenerationService({
    registry,
    models,
    runner,
    idempotency,
    metrics,
    logger,
    upstreamImageLimits: { maxPixels: config.upstreamMaxPixels, maxSide: config.upstreamMaxSide },
  });
  const chat = new ChatCompletionService({ registry, models, runner, idempotency, metrics, logger });

  const attempts = await openAttemptCounter({
    redisUrl: config.redisUrl,
    prefix: config.redisPrefix,
    onError: () => {}, // the limiter already reports Redis trouble
  });
  const users = new DashboardUsers({
    store,
    attempts,
    keyPepper: config.keyPepper,
    adminToken: config.adminToken,
    sessionTtlMs: config.sessionTtlMs,
    signup: { open: config.signupOpen, credits: parseUsd(config.signupCredits) },
  });

  const jobs = openJobs(config, { store, images, limiter, idempotency, logger, metrics });
  if (config.jobs.urlResults === 'hosted' && !jobs)
    throw new Error('DEEPSHI_URL_RESULTS=hosted needs hosted results, which are off (see the log).');

  let devKey: string | undefined;
  let devSignIn: RunningServer['devSignIn'];
  if (config.bootstrapDevAccount && store.kind === 'sqlite' && (await store.isEmpty())) {
    const account = await store.createAccount({
      name: 'development',
      credits: parseUsd(config.devAccountCredits),
      note: 'development account created on first start',
    });
    devKey = (await accounts.createKey({ account_id: account.id, name: 'development' })).key;
    devSignIn = { email: 'dev@localhost', password: randomBytes(12).toString('base64url') };
    await users.createUser({ account_id: account.id, email: devSignIn.email, password: devSignIn.password });
  }

  let ready = true;
  const app = buildApp({
    pingStore: () => store.ping(),
    images,
    chat,
    models,
    accounts,
    logger,
    adminToken: config.adminToken,
    metrics,
    metricsToken: config.metricsToken,
    keepaliveIntervalMs: config.keepaliveIntervalMs,
    bodyLimitBytes: config.bodyLimitBytes,
    requestTimeoutMs: config.requestTimeoutMs,
    corsOrigins: config.corsOrigins,
    editLimits: { maxFileBytes: config.editMaxFileBytes, maxRequestBytes: config.editMaxRequestBytes, maxPixels: config.editMaxPixels },
    isReady: () => ready,
    dashboard: {
      users,
      queries: new DashboardQueries(store, accounts, { ...config.defaultLimits, maxQueuedJobs: config.jobs.defaultMaxQueuedJobs }),
      creditCodes: new CreditCodes(store, users),
      console: new OperatorConsole(catalog, registry, metrics.registry, store.dashboard),
      version: PACKAGE_VERSION,
    },
    trustProxy: config.trustProxy,
    ...(jobs
      ? {
          jobs: {
            service: jobs.service,
            files: jobs.files,
            webhooks: jobs.webhooks,
            hostedAnswers: jobs.hostedAnswers,
            pollMs: config.jobs.pollMs,
          },
        }
      : {}),
  });

  // Holds whose instance died mid-generation: released (the caller was never answered, so never charged).
  // Any instance sweeps every instance's expired holds; each hold resolves exactly once whoever gets there first.
  let sweeping = false;
  const sweep = async () => {
    if (sweeping) return; // a slow sweep is never overlapped by the next tick
    sweeping = true;
    try {
      await sweepExpiredHolds(store, logger);
      await idempotency.reap().catch((error: unknown) => logger.error({ err: error }, 'idempotency key reaper failed'));
      await users.sweep().catch((error: unknown) => logger.error({ err: error }, 'expired session sweep failed'));
      if (jobs) await sweepJobs(jobs, store, logger);
    } finally {
      sweeping = false;
    }
  };
  const sweeper = setInterval(() => void sweep(), config.sweepIntervalMs);
  sweeper.unref();
  await sweep();

  let url = '';
  if (options.listen !== false) {
    url = await app.listen({ port: config.port, host: config.host });
  }

  // Once started: a failure to start still ends the process with its error.
  if (options.guardProcess) guardProcess(logger);
  jobs?.worker.start();
  jobs?.webhooks.start();

  let closing: Promise<void> | undefined;
  return {
    app,
    url,
    store,
    catalog,
    metrics,
    accounts,
    images,
    limiter,
    devKey,
    devSignIn,
    users,
    close() {
      closing ??= (async () => {
        ready = false;
        clearInterval(sweeper);
        const closed = app.close();
        // Jobs not started yet go back to the queue at once; running ones finish (or stop) with the other generations.
        await jobs?.worker.stop(0);
        const drained = await runner.drain(config.shutdownGraceMs);
        if (!drained) {
          // Each remaining caller is answered (503, or an error event on its stream) and its hold released now.
          const stopped = await runner.abandonAll(5_000);
          logger.warn(
            { stopped },
            'shutdown grace period ended with generations still running; they were stopped, answered 503 and their holds released',
          );
        }
        await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, drained ? 1000 : 3000).unref())]);
        await jobs?.worker.stop(3_000);
        await jobs?.webhooks.stop();
        await limiter.close();
        await attempts.close();
        await store.close();
      })();
      return closing;
    },
  };
}

/**
 * The last line of defence: an error no code path was listening for (a stream of one request erroring after it was
 * abandoned, a promise nobody awaited) is logged and the process keeps serving every other request. Node's default
 * would end the process and drop every request in flight with it. The causes are fixed where they are found (e.g.
 * providers/shared/http.ts discardBody); this only keeps one that was missed from becoming an outage.
 */
export function guardProcess(logger: Logger): void {
  process.on('uncaughtException', (error, origin) => {
    logger.error({ err: error, origin }, 'uncaught error (a bug: an error nothing listened for); the process keeps serving');
  });
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: reason }, 'unhandled promise rejection (a bug); the process keeps serving');
  });
}

export async function sweepExpiredHolds(store: Store, logger: Logger): Promise<number> {
  let released = 0;
  try {
    for (const id of await store.listExpiredReservations(Date.now(), 500)) {
      if (await store.releaseReservation(id, 'expired: the instance handling it stopped before finishing')) released++;
    }
    if (released) logger.warn({ released }, 'released expired holds');
  } catch (error) {
    logger.error({ err: error }, 'hold sweeper failed');
  }
  return released;
}
