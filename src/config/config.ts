import path from 'node:path';

/** Origins allowed to call /v1 from browsers: any ('*'), a list, or none (false: CORS off). */
export type CorsOrigins = '*' | string[] | false;

/**
 * All configuration, read once at start-up from the environment and validated. This is the only module
 * that reads process.env (provider credentials are looked up by variable name through `env`, kept here).
 */
export interface Config {
  port: number;
  host: string;
  /** `sqlite:<path>` / a bare path (embedded), or `postgres://…`. */
  databaseUrl: string;
  catalogPath: string;
  keepaliveIntervalMs: number;
  bodyLimitBytes: number;
  adminToken: string | undefined;
  /** Enables GET /metrics (Prometheus) behind this Bearer token; unset = no /metrics. */
  metricsToken: string | undefined;
  /** Origins allowed to call /v1 from browsers: '*' (default), a list, or false (CORS off). */
  corsOrigins: CorsOrigins;
  /** Create a development account and key on first start with an empty embedded database. */
  bootstrapDevAccount: boolean;
  devAccountCredits: string;
  logLevel: string;
  /** Longest a generation may run before it is abandoned and its hold released. */
  generationTimeoutMs: number;
  /** Longest the server waits to receive a whole request, headers and body (0 = no limit); not the time to answer it. */
  requestTimeoutMs: number;
  /** Grace period for in-flight generations on SIGTERM. */
  shutdownGraceMs: number;
  /** Pepper mixed into key hashes so a leaked database alone cannot be matched against guessed keys. */
  keyPepper: string;
  redisUrl: string | undefined;
  /** Prefix of every Redis key Deepshi writes, so several deployments (or test runs) can share one Redis. */
  redisPrefix: string;
  /** Server-wide per-key limits for keys that set none (0 = unlimited): DEEPSHI_DEFAULT_RPM / _IPM / _MAX_IN_FLIGHT / _TPM. */
  defaultLimits: { requestsPerMinute: number; imagesPerMinute: number; maxInFlight: number; tokensPerMinute: number };
  /** How often the hold sweeper (and the idempotency-key reaper) runs. */
  sweepIntervalMs: number;
  /** Time after the generation deadline before the sweeper may release a hold whose instance went away. */
  holdGraceMs: number;
  /** POST /v1/images/edits upload limits (docs/edits.md). */
  editMaxFileBytes: number;
  editMaxRequestBytes: number;
  editMaxPixels: number;
  /** DEEPSHI_SIGNUP=open lets anyone create an account in the dashboard, with DEEPSHI_SIGNUP_CREDITS (USD) of credit. */
  signupOpen: boolean;
  signupCredits: string;
  /** How long a dashboard session lasts from sign-in (DEEPSHI_SESSION_TTL_HOURS). */
  sessionTtlMs: number;
  /** Honour X-Forwarded-* from a reverse proxy (DEEPSHI_TRUST_PROXY): client IPs and HTTPS (Secure cookies). */
  trustProxy: boolean;
  /** Largest image accepted from an upstream: width x height, and either side (docs/reliability.md). */
  upstreamMaxPixels: number;
  upstreamMaxSide: number;
  /** The raw environment, for provider credentials looked up by the variable names in the catalog. */
  env: Readonly<Record<string, string | undefined>>;
  /** Async image jobs, hosted results and webhooks (docs/jobs.md). */
  jobs: JobsConfig;
}

/** Settings of async jobs, hosted results and webhooks (docs/jobs.md). */
export interface JobsConfig {
  /** Signs result links and seals webhook secrets; shared by every instance. Unset: a file in the data directory (SQLite only). */
  serverSecret: string | undefined;
  /** Where hosted results live on the filesystem (and the generated server secret): DEEPSHI_DATA_DIR, else the SQLite file's folder, else ./data. */
  dataDir: string;
  /** How long hosted results live (DEEPSHI_RESULT_TTL_HOURS, default 24; decimals allowed). */
  resultTtlMs: number;
  /** An S3-compatible bucket for hosted results instead of the filesystem. */
  s3:
    | {
        bucket: string;
        endpoint: string | undefined;
        region: string;
        accessKeyId: string | undefined;
        secretAccessKey: string | undefined;
        forcePathStyle: boolean;
      }
    | undefined;
  /** `hosted`: synchronous response_format "url" answers get hosted links instead of data: URIs. */
  urlResults: 'data' | 'hosted';
  /** Public base URL of this deployment for links (DEEPSHI_PUBLIC_URL); unset = the submitting request's origin. */
  publicUrl: string | undefined;
  /** Jobs one instance runs at once. */
  workerConcurrency: number;
  /** A claimed job's lease; renewed every third of it while the job runs. */
  leaseMs: number;
  /** How often an idle worker looks for jobs (and webhook deliveries). */
  pollMs: number;
  /** Longest a job may wait in the queue before it fails (its hold lasts this plus the generation deadline). */
  maxQueueWaitMs: number;
  /** Per-key cap on queued + running jobs for keys that set none. */
  defaultMaxQueuedJobs: number;
  webhooksAllowPrivate: boolean;
  /** Waits before each webhook retry (the 1st retry waits the first), with ±10 % jitter. */
  webhookRetryDelaysMs: number[];
  webhookTimeoutMs: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const DEFAULT_CATALOG = path.resolve(import.meta.dirname, '../../catalog/models.yaml');

function read(env: Record<string, string | undefined>, name: string): string | undefined {
  const value = env[name];
  // Empty strings count as unset, so `FOO=` in a .env file does not silently become a value.
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function integer(env: Record<string, string | undefined>, name: string, fallback: number, min: number, max: number): number {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name} must be a whole number between ${min} and ${max}; got "${raw}".`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(`${name} must be between ${min} and ${max}; got ${value}.`);
  return value;
}

/** DEEPSHI_CORS_ORIGINS: unset or `*` = any origin; `off` = no CORS; else a comma-separated list of origins. */
function corsOrigins(env: Record<string, string | undefined>): CorsOrigins {
  const raw = read(env, 'DEEPSHI_CORS_ORIGINS');
  if (raw === undefined || raw.trim() === '*') return '*';
  if (/^(off|none|false)$/i.test(raw.trim())) return false;
  return raw
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)
    .map((origin) => {
      let parsed: URL | undefined;
      try {
        parsed = new URL(origin);
      } catch {
        parsed = undefined;
      }
      if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.origin !== origin.replace(/\/$/, '')) {
        throw new ConfigError(
          `DEEPSHI_CORS_ORIGINS must be *, off, or comma-separated origins like https://app.example.com (scheme and host, no path); got "${origin}".`,
        );
      }
      return parsed.origin;
    });
}

function boolean(env: Record<string, string | undefined>, name: string, fallback: boolean): boolean {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false; got "${raw}".`);
}

/** DEEPSHI_SIGNUP: `open` lets anyone sign up in the dashboard; `closed` (default) leaves accounts to the operator. */
function signup(env: Record<string, string | undefined>): boolean {
  const raw = read(env, 'DEEPSHI_SIGNUP');
  if (raw === undefined || /^closed$/i.test(raw)) return false;
  if (/^open$/i.test(raw)) return true;
  throw new ConfigError(`DEEPSHI_SIGNUP must be open or closed; got "${raw}".`);
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const databaseUrl = read(env, 'DATABASE_URL') ?? 'sqlite:./data/deepshi.db';
  if (!/^(sqlite:|postgres(ql)?:\/\/)/.test(databaseUrl) && !databaseUrl.endsWith('.db')) {
    throw new ConfigError(
      `DATABASE_URL must be sqlite:<file> (e.g. sqlite:./data/deepshi.db) or postgres://user:pass@host/db; got "${databaseUrl.replace(/:[^:@/]*@/, ':***@')}".`,
    );
  }
  const adminToken = read(env, 'DEEPSHI_ADMIN_TOKEN');
  if (adminToken !== undefined && adminToken.length < 16) {
    throw new ConfigError('DEEPSHI_ADMIN_TOKEN must be at least 16 characters long (use e.g. `openssl rand -hex 32`).');
  }
  const metricsToken = read(env, 'DEEPSHI_METRICS_TOKEN');
  if (metricsToken !== undefined && metricsToken.length < 16) {
    throw new ConfigError('DEEPSHI_METRICS_TOKEN must be at least 16 characters long (use e.g. `openssl rand -hex 32`).');
  }
  const logLevel = read(env, 'LOG_LEVEL') ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent; got "${logLevel}".`);
  }
  const catalogPath = path.resolve(read(env, 'DEEPSHI_CATALOG') ?? DEFAULT_CATALOG);
  const config: Config = {
    port: integer(env, 'PORT', 8080, 0, 65535),
    host: read(env, 'HOST') ?? '0.0.0.0',
    databaseUrl,
    catalogPath,
    keepaliveIntervalMs: integer(env, 'DEEPSHI_KEEPALIVE_MS', 15_000, 10, 120_000),
    bodyLimitBytes: integer(env, 'DEEPSHI_BODY_LIMIT_BYTES', 1_048_576, 1024, 512 * 1024 * 1024),
    adminToken,
    metricsToken,
    corsOrigins: corsOrigins(env),
    bootstrapDevAccount: boolean(env, 'DEEPSHI_DEV_ACCOUNT', true),
    devAccountCredits: read(env, 'DEEPSHI_DEV_CREDITS') ?? '5',
    logLevel,
    generationTimeoutMs: integer(env, 'DEEPSHI_GENERATION_TIMEOUT_MS', 280_000, 100, 3_600_000),
    requestTimeoutMs: integer(env, 'DEEPSHI_REQUEST_TIMEOUT_MS', 60_000, 0, 3_600_000),
    shutdownGraceMs: integer(env, 'DEEPSHI_SHUTDOWN_GRACE_MS', 30_000, 0, 3_600_000),
    keyPepper: read(env, 'DEEPSHI_KEY_PEPPER') ?? '',
    redisUrl: read(env, 'REDIS_URL'),
    redisPrefix: read(env, 'DEEPSHI_REDIS_PREFIX') ?? 'deepshi:',
    defaultLimits: {
      requestsPerMinute: integer(env, 'DEEPSHI_DEFAULT_RPM', 0, 0, 10_000_000),
      imagesPerMinute: integer(env, 'DEEPSHI_DEFAULT_IPM', 0, 0, 10_000_000),
      maxInFlight: integer(env, 'DEEPSHI_DEFAULT_MAX_IN_FLIGHT', 0, 0, 1_000_000),
      tokensPerMinute: integer(env, 'DEEPSHI_DEFAULT_TPM', 0, 0, 10_000_000_000),
    },
    sweepIntervalMs: integer(env, 'DEEPSHI_SWEEP_INTERVAL_MS', 30_000, 100, 3_600_000),
    holdGraceMs: integer(env, 'DEEPSHI_HOLD_GRACE_MS', 60_000, 0, 3_600_000),
    editMaxFileBytes: integer(env, 'DEEPSHI_EDIT_MAX_FILE_BYTES', 20 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    editMaxRequestBytes: integer(env, 'DEEPSHI_EDIT_MAX_REQUEST_BYTES', 50 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    editMaxPixels: integer(env, 'DEEPSHI_EDIT_MAX_PIXELS', 40_000_000, 1, 1_000_000_000),
    signupOpen: signup(env),
    signupCredits: read(env, 'DEEPSHI_SIGNUP_CREDITS') ?? '0',
    sessionTtlMs: integer(env, 'DEEPSHI_SESSION_TTL_HOURS', 168, 1, 24 * 365) * 3_600_000,
    trustProxy: boolean(env, 'DEEPSHI_TRUST_PROXY', false),
    upstreamMaxPixels: integer(env, 'DEEPSHI_UPSTREAM_MAX_PIXELS', 40_000_000, 1, 1_000_000_000),
    upstreamMaxSide: integer(env, 'DEEPSHI_UPSTREAM_MAX_SIDE', 16_384, 1, 1_000_000),
    env: Object.freeze({ ...env }),
    jobs: jobsConfig(env, databaseUrl),
  };
  if (config.jobs.serverSecret !== undefined && config.jobs.serverSecret.length < 32) {
    throw new ConfigError('DEEPSHI_SERVER_SECRET must be at least 32 characters long (use e.g. `openssl rand -hex 32`).');
  }
  if (!/^\d+(\.\d{1,9})?$/.test(config.devAccountCredits)) {
    throw new ConfigError(`DEEPSHI_DEV_CREDITS must be a USD amount like "5" or "2.50"; got "${config.devAccountCredits}".`);
  }
  if (!/^\d+(\.\d{1,9})?$/.test(config.signupCredits)) {
    throw new ConfigError(`DEEPSHI_SIGNUP_CREDITS must be a USD amount like "0" or "2.50"; got "${config.signupCredits}".`);
  }
  if (config.requestTimeoutMs > 0 && config.requestTimeoutMs < 1000) {
    throw new ConfigError(
      `DEEPSHI_REQUEST_TIMEOUT_MS must be 0 (no limit) or at least 1000 (it bounds receiving a whole request, uploads included); got ${config.requestTimeoutMs}.`,
    );
  }
  return Object.freeze(config);
}

/** The defaults of the webhook retry schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 24 h (Standard Webhooks' example). */
export const DEFAULT_WEBHOOK_RETRY_DELAYS_MS = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 86_400_000];

function jobsConfig(env: Record<string, string | undefined>, databaseUrl: string): JobsConfig {
  const sqliteFile = /^postgres(ql)?:\/\//.test(databaseUrl) ? undefined : databaseUrl.replace(/^sqlite:/, '');
  const dataDir = path.resolve(
    read(env, 'DEEPSHI_DATA_DIR') ?? (sqliteFile && sqliteFile !== ':memory:' ? path.dirname(sqliteFile) : './data'),
  );
  const ttlRaw = read(env, 'DEEPSHI_RESULT_TTL_HOURS') ?? '24';
  if (!/^\d+(\.\d+)?$/.test(ttlRaw) || Number(ttlRaw) <= 0 || Number(ttlRaw) > 24 * 365) {
    throw new ConfigError(
      `DEEPSHI_RESULT_TTL_HOURS must be a number of hours above 0 (decimals allowed), at most a year; got "${ttlRaw}".`,
    );
  }
  const urlResults = read(env, 'DEEPSHI_URL_RESULTS') ?? 'data';
  if (urlResults !== 'data' && urlResults !== 'hosted')
    throw new ConfigError(`DEEPSHI_URL_RESULTS must be data or hosted; got "${urlResults}".`);
  if (urlResults === 'hosted' && !sqliteFile && read(env, 'DEEPSHI_SERVER_SECRET') === undefined) {
    throw new ConfigError('DEEPSHI_URL_RESULTS=hosted needs DEEPSHI_SERVER_SECRET with PostgreSQL (it signs the links on every instance).');
  }
  const publicUrl = read(env, 'DEEPSHI_PUBLIC_URL');
  if (publicUrl !== undefined && !/^https?:\/\/[^/]+/.test(publicUrl)) {
    throw new ConfigError(`DEEPSHI_PUBLIC_URL must be an http(s) URL such as https://images.example.com; got "${publicUrl}".`);
  }
  const delaysRaw = read(env, 'DEEPSHI_WEBHOOK_RETRY_DELAYS_MS');
  const webhookRetryDelaysMs =
    delaysRaw === undefined
      ? DEFAULT_WEBHOOK_RETRY_DELAYS_MS
      : delaysRaw.split(',').map((item) => {
          const value = Number(item.trim());
          if (!/^\d+$/.test(item.trim()) || value > 7 * 86_400_000) {
            throw new ConfigError(
              `DEEPSHI_WEBHOOK_RETRY_DELAYS_MS must be comma-separated whole milliseconds (at most 7 days each); got "${delaysRaw}".`,
            );
          }
          return value;
        });
  const bucket = read(env, 'DEEPSHI_RESULTS_S3_BUCKET');
  return {
    serverSecret: read(env, 'DEEPSHI_SERVER_SECRET'),
    dataDir,
    resultTtlMs: Math.round(Number(ttlRaw) * 3_600_000),
    s3:
      bucket === undefined
        ? undefined
        : {
            bucket,
            endpoint: read(env, 'DEEPSHI_RESULTS_S3_ENDPOINT'),
            region: read(env, 'DEEPSHI_RESULTS_S3_REGION') ?? read(env, 'AWS_REGION') ?? 'us-east-1',
            accessKeyId: read(env, 'DEEPSHI_RESULTS_S3_ACCESS_KEY_ID') ?? read(env, 'AWS_ACCESS_KEY_ID'),
            secretAccessKey: read(env, 'DEEPSHI_RESULTS_S3_SECRET_ACCESS_KEY') ?? read(env, 'AWS_SECRET_ACCESS_KEY'),
            forcePathStyle: boolean(env, 'DEEPSHI_RESULTS_S3_FORCE_PATH_STYLE', read(env, 'DEEPSHI_RESULTS_S3_ENDPOINT') !== undefined),
          },
    urlResults,
    publicUrl: publicUrl?.replace(/\/+$/, ''),
    workerConcurrency: integer(env, 'DEEPSHI_JOB_CONCURRENCY', 16, 1, 10_000),
    leaseMs: integer(env, 'DEEPSHI_JOB_LEASE_MS', 30_000, 300, 3_600_000),
    pollMs: integer(env, 'DEEPSHI_JOB_POLL_MS', 1_000, 10, 60_000),
    maxQueueWaitMs: integer(env, 'DEEPSHI_JOB_MAX_WAIT_MS', 86_400_000, 1_000, 7 * 86_400_000),
    defaultMaxQueuedJobs: integer(env, 'DEEPSHI_DEFAULT_MAX_QUEUED_JOBS', 100, 1, 1_000_000),
    webhooksAllowPrivate: boolean(env, 'DEEPSHI_WEBHOOKS_ALLOW_PRIVATE', false),
    webhookRetryDelaysMs,
    webhookTimeoutMs: integer(env, 'DEEPSHI_WEBHOOK_TIMEOUT_MS', 15_000, 100, 60_000),
  };
}
