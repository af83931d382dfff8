import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { JobsConfig } from '../../config/config.ts';
import type { Caller } from '../../domain/caller.ts';
import { GatewayError, insufficientQuota, invalidRequest, rateLimited } from '../../domain/errors.ts';
import type { PartialImage } from '../../providers/types.ts';
import type { Admission, RequestLimiter } from '../../limits/limiter.ts';
import type { JobListQuery, JobRecord, JobStatus } from '../../store/jobs.ts';

export type { JobRecord, JobStatus };
import type { Store } from '../../store/types.ts';
import type { IdempotencyService } from '../idempotency.ts';
import type { PreparedImageRequest } from '../image-generation.ts';
import type { HostedFiles } from './hosted-files.ts';
import { jobJson, type StoredJobRequest } from './job-json.ts';
import { checkWebhookUrl, type WebhookService } from './webhooks.ts';

/** What the submitting route adds to a prepared request. */
export interface JobSubmission {
  requestId: string;
  idempotencyKey: string | undefined;
  webhookUrl: string | undefined;
  /** The submitting request's origin (`https://host`), used for links when DEEPSHI_PUBLIC_URL is unset. */
  origin: string;
}

/** Local notifications about one job: its status changed (any instance: found by polling) or a partial image came. */
export type JobEvent = { kind: 'status'; job: JobRecord } | { kind: 'partial'; partial: PartialImage };

export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'in_progress', 'succeeded', 'failed', 'cancelled'];

/**
 * Async image jobs (docs/jobs.md), the caller's side: submitting (after the same validation, per-key limits and hold
 * as a synchronous call), reading, listing, cancelling, and the events a job emits. The work itself is JobWorker's.
 */
export class JobService {
  private readonly events = new EventEmitter();
  /** Set by the worker: cancels a job it runs here at once, and wakes it when a job is queued. */
  worker: { cancelLocal(jobId: string): void; wake(): void } | undefined;

  constructor(
    private readonly deps: {
      store: Store;
      files: HostedFiles;
      webhooks: WebhookService;
      limiter: RequestLimiter;
      idempotency: IdempotencyService;
      logger: Logger;
      config: JobsConfig;
      generationTimeoutMs: number;
      holdGraceMs: number;
    },
  ) {
    this.events.setMaxListeners(0);
  }

  get idempotency(): IdempotencyService {
    return this.deps.idempotency;
  }

  /**
   * Reads and removes the job fields of a request body (`async`, `webhook_url`), so they never reach an upstream.
   * `Prefer: respond-async` (RFC 7240) asks for a job as `"async": true` does.
   */
  takeJobFields(
    body: Record<string, unknown>,
    preferHeader: string | string[] | undefined,
    coerceStrings = false,
  ): { async: boolean; webhookUrl: string | undefined } {
    let wantsAsync = false;
    const prefer = Array.isArray(preferHeader) ? preferHeader.join(',') : (preferHeader ?? '');
    if (prefer.split(/[,;]/).some((token) => token.trim().toLowerCase() === 'respond-async')) wantsAsync = true;
    if ('async' in body) {
      let value = body.async;
      if (coerceStrings && (value === 'true' || value === 'false')) value = value === 'true';
      if (typeof value !== 'boolean') throw invalidRequest("'async' must be true or false.", 'async', 'invalid_type');
      wantsAsync ||= value;
      delete body.async;
    }
    // A synchronous request keeps `webhook_url` as an ordinary extra (adapters drop it with a warning, as before).
    let webhookUrl: string | undefined;
    if (wantsAsync && 'webhook_url' in body) {
      const value = body.webhook_url;
      delete body.webhook_url;
      if (value !== null && value !== undefined) {
        if (typeof value !== 'string') throw invalidRequest("'webhook_url' must be a URL string.", 'webhook_url', 'invalid_type');
        webhookUrl = value;
      }
    }
    if (webhookUrl !== undefined) checkWebhookUrl(webhookUrl, this.deps.config.webhooksAllowPrivate);
    return { async: wantsAsync, webhookUrl };
  }

  /**
   * Per-key request and image windows (as a synchronous call) and the key's max_queued_jobs. The in-flight cap and
   * the model's concurrency cap are applied when the job runs: a job waits in the queue instead of being refused.
   */
  async admit(caller: Caller, prepared: PreparedImageRequest, requestId: string): Promise<Admission> {
    if (prepared.stream) {
      throw invalidRequest(
        "An async job cannot also be streamed: drop 'stream' and follow the job with GET /v1/images/jobs/{id}/events.",
        'stream',
        'invalid_value',
      );
    }
    // The key's own max_queued_jobs, else the server default; 0 = unlimited.
    const limit = caller.limits?.maxQueuedJobs ?? this.deps.config.defaultMaxQueuedJobs;
    if (limit > 0 && (await this.deps.store.countOpenJobs(caller.keyId)) >= limit) {
      throw rateLimited(
        `This API key already has ${limit} jobs queued or running (max_queued_jobs). Wait for some to finish, or cancel some.`,
        5,
      );
    }
    const admission = await this.deps.limiter.admit({
      keyId: caller.keyId,
      keyLimits: {
        requestsPerMinute: caller.limits?.requestsPerMinute ?? null,
        imagesPerMinute: caller.limits?.imagesPerMinute ?? null,
        maxInFlight: 0,
      },
      images: prepared.request.n,
      model: prepared.model.id,
      modelCap: 0,
      modelSlots: 0,
      requestId,
    });
    // Nothing is held while queued: the windows were charged, the slots come when the job runs.
    await admission.release();
    return admission;
  }

  /** The hold lasts as long as a job may wait and then run; the worker resolves it, the sweeper only as a last resort. */
  async reserve(caller: Caller, prepared: PreparedImageRequest, requestId: string): Promise<void> {
    const { config, generationTimeoutMs, holdGraceMs } = this.deps;
    const ok = await this.deps.store.reserveCredits({
      requestId,
      accountId: caller.accountId,
      keyId: caller.keyId,
      model: prepared.model.id,
      endpoint: prepared.endpoint,
      amount: prepared.quote.hold,
      expiresAt: Date.now() + config.maxQueueWaitMs + generationTimeoutMs + holdGraceMs,
    });
    if (!ok) throw insufficientQuota();
  }

  /** Queues a reserved request as a job. On any failure the hold is released and the error rethrown. */
  async submit(caller: Caller, prepared: PreparedImageRequest, submission: JobSubmission): Promise<JobRecord> {
    const { store, files, logger, config } = this.deps;
    const jobId = `imgjob_${randomUUID().replace(/-/g, '')}`;
    try {
      if (submission.webhookUrl === undefined) {
        // The account default applies; a webhook needs the account's signing secret either way.
      } else if (!(await this.deps.webhooks.hasSecret(caller.accountId))) {
        throw invalidRequest(
          'This account has no webhook signing secret yet. The operator creates one with POST /admin/v1/accounts/{id}/webhook-secret (it is shown once); then retry.',
          'webhook_url',
          'webhook_secret_missing',
        );
      }
      const inputFiles: string[] = [];
      for (const image of prepared.request.inputImages) {
        const saved = await files.save({
          accountId: caller.accountId,
          jobId,
          kind: 'input',
          bytes: image.bytes,
          mediaType: image.mediaType,
          expiresAt: Date.now() + config.maxQueueWaitMs + this.deps.generationTimeoutMs + this.deps.holdGraceMs + config.resultTtlMs,
        });
        inputFiles.push(saved.id);
      }
      const { inputImages: _images, ...request } = prepared.request;
      const stored: StoredJobRequest = {
        envelope: {
          request: request as unknown as Record<string, unknown>,
          responseFormat: prepared.responseFormat,
          warnings: prepared.warnings,
        },
        baseUrl: config.publicUrl ?? submission.origin,
      };
      const job = await store.createJob({
        id: jobId,
        accountId: caller.accountId,
        keyId: caller.keyId,
        requestId: submission.requestId,
        model: prepared.model.id,
        endpoint: prepared.endpoint,
        request: stored as unknown as Record<string, unknown>,
        inputFiles,
        webhookUrl: submission.webhookUrl ?? null,
        idempotencyKey: submission.idempotencyKey ?? null,
        createdAt: Date.now(),
      });
      this.worker?.wake();
      return job;
    } catch (error) {
      await store.releaseReservation(submission.requestId, 'the job could not be queued').catch((releaseError: unknown) => {
        logger.error({ err: releaseError, requestId: submission.requestId }, 'could not release the hold of a job that was not queued');
      });
      throw error;
    }
  }

  /** The caller's job, or 404 (another account's job is not found either). */
  async get(caller: Caller, id: string): Promise<JobRecord> {
    const job = await this.deps.store.getJob(id);
    if (!job || job.accountId !== caller.accountId) throw jobNotFound(id);
    return job;
  }

  /** A job by id, whoever owns it (the events stream re-reads a job it already checked). */
  find(id: string): Promise<JobRecord | undefined> {
    return this.deps.store.getJob(id);
  }

  async list(caller: Caller, query: JobListQuery): Promise<JobRecord[]> {
    return this.deps.store.listJobs(caller.accountId, query);
  }

  /**
   * Cancels a job: a queued one ends at once and its hold is released; a running one is stopped by its worker
   * (its hold released, nothing charged) unless its images were already delivered. An ended job is left as it is.
   */
  async cancel(caller: Caller, id: string): Promise<JobRecord> {
    const job = await this.get(caller, id);
    const outcome = await this.deps.store.cancelJob(job.id, caller.accountId, Date.now());
    if (outcome === 'cancelled') {
      await this.deps.store.releaseReservation(job.requestId, 'cancelled by the caller while queued');
      const ended = (await this.deps.store.getJob(job.id))!;
      await this.ended(ended);
      return ended;
    }
    if (outcome === 'requested') this.worker?.cancelLocal(job.id);
    return (await this.deps.store.getJob(job.id))!;
  }

  /** The job object, with the result's base64 inline when the caller asked for b64_json (never in webhooks). */
  async toJson(job: JobRecord, options: { inline?: boolean } = {}): Promise<Record<string, unknown>> {
    const deliveries =
      job.webhookUrl !== null || job.status === 'succeeded' || job.status === 'failed' || job.status === 'cancelled'
        ? await this.deps.store.listWebhookDeliveries(job.id)
        : [];
    let inline: string[] | undefined;
    const stored = job.request as unknown as StoredJobRequest;
    if (options.inline && job.status === 'succeeded' && stored.envelope?.responseFormat === 'b64_json') {
      const results = await this.deps.store.listJobFiles(job.id, 'result');
      const read = await Promise.all(results.map((file) => this.deps.files.read(file.id)));
      if (read.every(Boolean)) inline = read.map((entry) => entry!.bytes.toString('base64'));
    }
    return jobJson(job, deliveries, inline);
  }

  /** Follows a job: `listener` gets each status change and partial image until `stop` is called. */
  subscribe(jobId: string, listener: (event: JobEvent) => void): () => void {
    this.events.on(jobId, listener);
    return () => this.events.off(jobId, listener);
  }

  /** Told by the worker (or cancel) when a job changes here. */
  notify(jobId: string, event: JobEvent): void {
    this.events.emit(jobId, event);
  }

  /** A job ended (by this instance): local followers are told, and its webhook is queued. */
  async ended(job: JobRecord): Promise<void> {
    this.notify(job.id, { kind: 'status', job });
    try {
      await this.deps.webhooks.enqueue(job, await this.toJson(job));
    } catch (error) {
      this.deps.logger.error({ err: error, jobId: job.id }, 'could not queue the webhook of an ended job');
    }
  }
}

export function jobNotFound(id: string): GatewayError {
  return new GatewayError(`No job with id "${id.slice(0, 80)}".`, {
    status: 404,
    type: 'invalid_request_error',
    code: 'not_found',
    param: 'id',
  });
}
