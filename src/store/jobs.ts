/**
 * Persistence for async image jobs (docs/jobs.md): the jobs themselves with their lease, the files Deepshi hosts for
 * them (results and edit inputs), webhook deliveries with their durable schedule, and each account's webhook settings.
 * SQLite and PostgreSQL implement it (src/store/sqlite/sqlite-jobs.ts, src/store/postgres/postgres-jobs.ts) and pass
 * the shared contract suite (test/store/store-contract.ts).
 *
 * A job is claimed by one instance at a time: `claimed_by` + `lease_until`. The claim is one arbitrated statement
 * (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: a guarded UPDATE in an IMMEDIATE transaction), so two instances never
 * hold the same job; a lease that is not renewed lapses and the job becomes claimable again.
 */

export type JobStatus = 'queued' | 'in_progress' | 'succeeded' | 'failed' | 'cancelled';

export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

/**
 * Where the upstream call of a job stands, written before and after each step so a crash can be judged:
 * `none` — nothing sent (safe to run again); `calling` — a request may have reached an upstream that gives no handle
 * (never sent twice: the job fails and its hold is released); `accepted` — the upstream took the work and gave
 * `handle`, which any instance can resume by polling.
 */
export interface JobUpstreamState {
  state: 'none' | 'calling' | 'accepted';
  /** Catalog route index the handle belongs to. */
  route?: number;
  /** Provider-specific resume data (BFL's polling URL, fal's request id). */
  handle?: Record<string, unknown>;
}

export interface JobRecord {
  id: string;
  accountId: string;
  keyId: string;
  /** The hold's request id (requests table): the job's charge is that request's settlement. */
  requestId: string;
  model: string;
  endpoint: 'images.generations' | 'images.edits';
  status: JobStatus;
  /** The request as submitted (body fields, JSON-safe), re-prepared by the worker that runs it. */
  request: Record<string, unknown>;
  /** Hosted files holding the edit's input images, in order (empty for generations). */
  inputFiles: string[];
  webhookUrl: string | null;
  idempotencyKey: string | null;
  createdAt: number;
  startedAt: number | null;
  completedAt: number | null;
  /** When the result files are deleted (set when the job succeeds). */
  expiresAt: number | null;
  result: Record<string, unknown> | null;
  error: Record<string, unknown> | null;
  claimedBy: string | null;
  leaseUntil: number | null;
  /** Not claimable before this time (a job handed back because its model was at its cap waits a little). */
  runAfter: number;
  upstream: JobUpstreamState;
  cancelRequested: boolean;
  /** How many times a worker claimed it. */
  claims: number;
}

export interface NewJob {
  id: string;
  accountId: string;
  keyId: string;
  requestId: string;
  model: string;
  endpoint: JobRecord['endpoint'];
  request: Record<string, unknown>;
  inputFiles: string[];
  webhookUrl: string | null;
  idempotencyKey: string | null;
  createdAt: number;
}

/** The fields a worker may change on a job it holds (others keep their value). */
export interface JobPatch {
  status?: JobStatus;
  startedAt?: number | null;
  completedAt?: number | null;
  expiresAt?: number | null;
  result?: Record<string, unknown> | null;
  error?: Record<string, unknown> | null;
  upstream?: JobUpstreamState;
}

export interface JobListQuery {
  status?: JobStatus;
  limit: number;
  /** A job id: only jobs created before it (newest first), for paging. */
  after?: string;
}

export interface HostedFile {
  id: string;
  accountId: string;
  jobId: string | null;
  kind: 'result' | 'input';
  mediaType: string;
  bytes: number;
  /** Where the bytes are in the result storage (filesystem path or object key under its root). */
  storageKey: string;
  createdAt: number;
  expiresAt: number;
  deletedAt: number | null;
}

export type WebhookEventType = 'image.job.succeeded' | 'image.job.failed' | 'image.job.cancelled';

export interface WebhookAttempt {
  at: number;
  /** HTTP status, or null when no answer came (connection refused, timeout, refused target). */
  status: number | null;
  error?: string;
}

export interface WebhookDelivery {
  /** `msg_…`: the webhook-id header, the same on every attempt. */
  id: string;
  jobId: string;
  accountId: string;
  url: string;
  eventType: WebhookEventType;
  /** The exact body sent on every attempt. */
  payload: string;
  status: 'pending' | 'succeeded' | 'failed';
  attempts: WebhookAttempt[];
  nextAttemptAt: number | null;
  claimedBy: string | null;
  leaseUntil: number | null;
  createdAt: number;
}

/** An account's webhook settings. Secrets are stored sealed (encrypted with the server secret), never in clear. */
export interface WebhookSettings {
  accountId: string;
  sealedSecret: string | null;
  /** The secret before the last rotation, still signed with until `previousUntil`. */
  sealedPreviousSecret: string | null;
  previousUntil: number | null;
  defaultUrl: string | null;
  updatedAt: number;
}

export interface JobStore {
  createJob(job: NewJob): Promise<JobRecord>;
  getJob(id: string): Promise<JobRecord | undefined>;
  listJobs(accountId: string, query: JobListQuery): Promise<JobRecord[]>;
  /** Jobs of a key not yet ended (queued or in progress): what max_queued_jobs bounds. */
  countOpenJobs(keyId: string): Promise<number>;
  /**
   * Claims the oldest claimable job — queued with no live lease, or in progress with a lapsed lease (its instance
   * died) — whose model is not in `excludeModels`, for `owner` until `leaseUntil`. One arbitrated statement.
   */
  claimJob(owner: string, now: number, leaseUntil: number, excludeModels: string[]): Promise<JobRecord | undefined>;
  /** Extends the leases of the jobs `owner` holds; returns the ids it still holds (a job cancelled meanwhile is listed with cancelRequested). */
  renewJobLeases(owner: string, ids: string[], leaseUntil: number): Promise<JobRecord[]>;
  /** Changes a job `owner` holds and that has not ended; false when it does not hold it (lease lost) or the job ended. */
  updateHeldJob(id: string, owner: string, patch: JobPatch): Promise<boolean>;
  /** Gives a held, not yet started job back to the queue (SIGTERM, model at its cap): claimable after `runAfter`. */
  unclaimJob(id: string, owner: string, runAfter: number): Promise<boolean>;
  /** Hands back every queued job `owner` holds (shutdown); returns how many. */
  unclaimAllJobs(owner: string): Promise<number>;
  /**
   * Cancels a job of `accountId` that is queued and held by no live lease (it ends at once: true). A job held by a
   * worker gets `cancel_requested` instead (its worker stops it): false. Undefined when there is no such open job.
   */
  cancelJob(id: string, accountId: string, now: number): Promise<'cancelled' | 'requested' | undefined>;
  /**
   * Jobs that ended without a charge (failed, cancelled) whose hold is still held: their instance stopped between
   * ending the job and releasing the hold. The reconciler releases them.
   */
  listEndedJobsWithHolds(limit: number): Promise<JobRecord[]>;
  /** Counts per status, and the oldest queued job's creation time (metrics). */
  jobStats(): Promise<{ byStatus: Record<JobStatus, number>; oldestQueuedAt: number | null }>;

  createFile(file: Omit<HostedFile, 'deletedAt'>): Promise<HostedFile>;
  getFile(id: string): Promise<HostedFile | undefined>;
  /** A job's files of one kind, in the order they were recorded. */
  listJobFiles(jobId: string, kind: HostedFile['kind']): Promise<HostedFile[]>;
  /** Live files whose expiry has passed (the sweeper deletes their bytes, then marks them deleted). */
  listExpiredFiles(now: number, limit: number): Promise<HostedFile[]>;
  markFileDeleted(id: string, now: number): Promise<boolean>;

  createWebhookDelivery(delivery: Omit<WebhookDelivery, 'attempts' | 'status' | 'claimedBy' | 'leaseUntil'>): Promise<WebhookDelivery>;
  /** Claims up to `limit` pending deliveries due by `now` whose lease (if any) lapsed. */
  claimDueWebhookDeliveries(owner: string, now: number, leaseUntil: number, limit: number): Promise<WebhookDelivery[]>;
  /** Appends an attempt and sets what follows (pending with the next time, or done); only by the holder. */
  recordWebhookAttempt(
    id: string,
    owner: string,
    attempt: WebhookAttempt,
    next: { status: WebhookDelivery['status']; nextAttemptAt: number | null },
  ): Promise<boolean>;
  listWebhookDeliveries(jobId: string): Promise<WebhookDelivery[]>;
  webhookDeliveryStats(): Promise<Record<WebhookDelivery['status'], number>>;

  getWebhookSettings(accountId: string): Promise<WebhookSettings | undefined>;
  /** Sets the secret (the old one kept as previous until `previousUntil`); the account must exist. */
  setWebhookSecret(
    accountId: string,
    sealed: string,
    sealedPrevious: string | null,
    previousUntil: number | null,
    now: number,
  ): Promise<WebhookSettings>;
  setWebhookDefaultUrl(accountId: string, url: string | null, now: number): Promise<WebhookSettings>;
}

/** Every JobStore method: the stores forward them to their job module (see delegateJobStore). */
const JOB_STORE_METHODS = [
  'createJob',
  'getJob',
  'listJobs',
  'countOpenJobs',
  'claimJob',
  'renewJobLeases',
  'updateHeldJob',
  'unclaimJob',
  'unclaimAllJobs',
  'cancelJob',
  'listEndedJobsWithHolds',
  'jobStats',
  'createFile',
  'getFile',
  'listJobFiles',
  'listExpiredFiles',
  'markFileDeleted',
  'createWebhookDelivery',
  'claimDueWebhookDeliveries',
  'recordWebhookAttempt',
  'listWebhookDeliveries',
  'webhookDeliveryStats',
  'getWebhookSettings',
  'setWebhookSecret',
  'setWebhookDefaultUrl',
] as const satisfies ReadonlyArray<keyof JobStore>;

/**
 * Makes a store class answer every JobStore method by calling the same method of the object `jobsOf` returns, so the
 * job tables live in their own files and the main store files only wire them in.
 */
export function delegateJobStore<T extends object>(prototype: T, jobsOf: (store: T) => JobStore): void {
  for (const name of JOB_STORE_METHODS) {
    Object.defineProperty(prototype, name, {
      configurable: true,
      writable: true,
      value(this: T, ...args: unknown[]) {
        const jobs = jobsOf(this) as unknown as Record<string, (...a: unknown[]) => unknown>;
        return jobs[name](...args);
      },
    });
  }
}
