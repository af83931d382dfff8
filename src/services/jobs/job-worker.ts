import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Logger } from 'pino';
import type { JobsConfig } from '../../config/config.ts';
import { GatewayError } from '../../domain/errors.ts';
import type { NormalizedImageRequest } from '../../domain/requests.ts';
import { usageObject } from '../../domain/usage.ts';
import { decodeBase64Text } from '../../images/base64.ts';
import type { Admission, RequestLimiter } from '../../limits/limiter.ts';
import type { JobPatch, JobRecord } from '../../store/jobs.ts';
import type { RequestRecord, Store } from '../../store/types.ts';
import type { ImageGenerationService, PreparedImageRequest, UpstreamHandle } from '../image-generation.ts';
import type { HostedFiles } from './hosted-files.ts';
import type { StoredJobRequest } from './job-json.ts';
import { callerOf, cancelledError, envelope, prepareStoredJob } from './stored-job.ts';
import type { JobService } from './job-service.ts';

interface RunningJob {
  job: JobRecord;
  abort: AbortController;
  cancelled: boolean;
}

/**
 * Runs queued jobs. Every instance runs one: it claims jobs (a lease in the store, renewed while a job runs), takes the
 * model's concurrency slot and the key's in-flight slot (a job that cannot get them goes back to the queue for a
 * moment instead of being refused), runs the request through ImageGenerationService.execute — the same hold, upstream
 * calls, failover and settlement as a synchronous call — stores the images as hosted files before the charge is
 * settled, then records the result.
 *
 * After a crash the lease lapses and another instance claims the job; the job's `upstream` state decides (store/jobs.ts):
 * nothing sent → run again; accepted with a handle → resumed by polling it, never resubmitted; sent to an upstream
 * without handles → failed with the hold released. A job whose charge was settled before the crash is completed from
 * its stored files: the charge is settled exactly once in every case (the store resolves a hold only once).
 */
export class JobWorker {
  readonly owner = `${os.hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  private readonly running = new Map<string, RunningJob>();
  /** Models at their concurrency cap: not claimed until this time (or until one of their jobs ends here). */
  private readonly blocked = new Map<string, number>();
  private loopTimer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private claiming = false;
  private stopped = true;

  constructor(
    private readonly deps: {
      store: Store;
      images: ImageGenerationService;
      files: HostedFiles;
      jobs: JobService;
      limiter: RequestLimiter;
      logger: Logger;
      config: JobsConfig;
      generationTimeoutMs: number;
    },
  ) {
    deps.jobs.worker = this;
  }

  start(): void {
    this.stopped = false;
    this.leaseTimer = setInterval(() => void this.renewLeases(), Math.max(100, Math.floor(this.deps.config.leaseMs / 3)));
    this.leaseTimer.unref();
    this.wake();
  }

  /** Looks for work now (a job was queued, a slot freed). */
  wake(): void {
    if (this.stopped) return;
    if (this.loopTimer) clearTimeout(this.loopTimer);
    this.loopTimer = setTimeout(() => void this.fill(), 0);
    this.loopTimer.unref();
  }

  /** A caller cancelled a job this instance may be running: stop it now (its hold is released, nothing charged). */
  cancelLocal(jobId: string): void {
    const running = this.running.get(jobId);
    if (!running) return;
    running.cancelled = true;
    running.abort.abort(new DOMException('The job was cancelled.', 'AbortError'));
  }

  /**
   * SIGTERM: stop claiming, hand back every job not yet started, and wait (bounded) for running ones. Jobs still
   * running at the end keep their state in the store; another instance takes them over when their lease lapses.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    if (this.loopTimer) clearTimeout(this.loopTimer);
    const handedBack = await this.deps.store.unclaimAllJobs(this.owner).catch(() => 0);
    if (handedBack) this.deps.logger.info({ handedBack }, 'queued jobs handed back at shutdown');
    const all = Promise.allSettled(
      [...this.running.values()].map(
        (entry) =>
          new Promise<void>((resolve) => {
            const check = setInterval(() => {
              if (!this.running.has(entry.job.id)) {
                clearInterval(check);
                resolve();
              }
            }, 50);
            check.unref();
          }),
      ),
    );
    await Promise.race([all, new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
    if (this.leaseTimer) clearInterval(this.leaseTimer);
  }

  get runningCount(): number {
    return this.running.size;
  }

  /** Claims jobs while there is room, then looks again after the poll interval. */
  private async fill(): Promise<void> {
    if (this.claiming || this.stopped) return;
    this.claiming = true;
    const { store, config, logger } = this.deps;
    try {
      while (!this.stopped && this.running.size < config.workerConcurrency) {
        const now = Date.now();
        for (const [model, until] of this.blocked) if (until <= now) this.blocked.delete(model);
        const job = await store.claimJob(this.owner, now, now + config.leaseMs, [...this.blocked.keys()]);
        if (!job) break;
        const admission = await this.admit(job);
        if (!admission) continue;
        const entry: RunningJob = { job, abort: new AbortController(), cancelled: false };
        this.running.set(job.id, entry);
        void this.run(entry, admission)
          .catch((error: unknown) => logger.error({ err: error, jobId: job.id }, 'job runner failed'))
          .finally(() => {
            this.running.delete(job.id);
            this.blocked.delete(job.model);
            void admission.release();
            this.wake();
          });
      }
    } catch (error) {
      logger.error({ err: error }, 'claiming jobs failed; retrying');
    } finally {
      this.claiming = false;
      if (!this.stopped) {
        if (this.loopTimer) clearTimeout(this.loopTimer);
        this.loopTimer = setTimeout(() => void this.fill(), config.pollMs);
        this.loopTimer.unref();
      }
    }
  }

  /** The model's concurrency slot and the key's in-flight slot; undefined (job handed back) when either is full. */
  private async admit(job: JobRecord): Promise<Admission | undefined> {
    const { images, limiter, store } = this.deps;
    if (job.cancelRequested) return { headers: {}, release: async () => {} };
    try {
      const key = await store.getApiKey(job.keyId);
      const model = images.resolveModel(callerOf(job), job.model).model;
      const request = (job.request as unknown as StoredJobRequest).envelope.request as unknown as NormalizedImageRequest;
      return await limiter.admit({
        keyId: job.keyId,
        keyLimits: { requestsPerMinute: 0, imagesPerMinute: 0, maxInFlight: key?.limits.maxInFlight ?? null },
        images: request.n,
        model: job.model,
        modelCap: model.max_concurrency ?? 0,
        modelSlots: 1,
        requestId: job.requestId,
      });
    } catch (error) {
      if (error instanceof GatewayError && error.status === 429) {
        const waitMs = Math.min(2_000, Math.max(100, Number(error.headers['retry-after'] ?? 1) * 250));
        if (/concurrent generations/.test(error.message)) this.blocked.set(job.model, Date.now() + waitMs);
        await store.unclaimJob(job.id, this.owner, Date.now() + (/concurrent generations/.test(error.message) ? 0 : waitMs));
        if (job.status === 'in_progress') {
          // A taken-over job keeps its state; it is simply claimed again later (its lease is now free).
          await store.updateHeldJob(job.id, this.owner, {}).catch(() => false);
        }
        return undefined;
      }
      // The model is gone from the catalog or the key may no longer use it: the job runs into run()'s checks.
      return { headers: {}, release: async () => {} };
    }
  }

  private async run(entry: RunningJob, admission: Admission): Promise<void> {
    void admission;
    const { store, images, logger } = this.deps;
    let job = entry.job;
    const update = async (patch: JobPatch): Promise<boolean> => {
      const ok = await store.updateHeldJob(job.id, this.owner, patch);
      if (ok) {
        job = { ...job, ...patch } as JobRecord;
        if (patch.status) this.deps.jobs.notify(job.id, { kind: 'status', job });
      }
      return ok;
    };
    const end = async (patch: JobPatch & { status: 'succeeded' | 'failed' | 'cancelled' }) => {
      const ok = await update({ completedAt: Date.now(), ...patch });
      if (ok) await this.deps.jobs.ended((await store.getJob(job.id)) ?? job);
      else logger.warn({ jobId: job.id }, 'job ended elsewhere or its lease was lost before it could be recorded');
    };
    const release = (reason: string) =>
      store.releaseReservation(job.requestId, reason).catch((error: unknown) => {
        logger.error({ err: error, jobId: job.id }, 'could not release a job hold; the reconciler retries');
        return false;
      });

    if (job.cancelRequested) {
      await release('cancelled by the caller');
      return end({ status: 'cancelled', error: cancelledError() });
    }
    const hold = await store.getRequest(job.requestId);
    if (hold?.status === 'settled') return this.completeSettled(job, hold, end);
    if (!hold || hold.status === 'released') {
      return end({
        status: 'failed',
        error: envelope('The job waited longer than this server keeps a job queued; you were not charged.', 'job_expired'),
      });
    }

    let resume: UpstreamHandle | undefined;
    if (job.status === 'in_progress') {
      if (job.upstream.state === 'accepted' && job.upstream.handle && job.upstream.route !== undefined) {
        resume = { route: job.upstream.route, handle: job.upstream.handle };
        logger.warn({ jobId: job.id }, 'resuming a job accepted upstream by an instance that stopped');
      } else if (job.upstream.state === 'calling') {
        await release('the instance running the job stopped while the upstream was working');
        return end({
          status: 'failed',
          error: envelope(
            'The server running this job stopped while the model was generating, and this model cannot be resumed. You were not charged; submit it again.',
            'job_interrupted',
            'api_error',
          ),
        });
      }
    }

    let prepared: PreparedImageRequest;
    try {
      prepared = await prepareStoredJob(job, this.deps.images, this.deps.files);
    } catch (error) {
      await release('the job could not be prepared');
      const gatewayError =
        error instanceof GatewayError ? error : new GatewayError('The job could not be prepared.', { status: 500, type: 'api_error' });
      return end({ status: 'failed', error: gatewayError.toEnvelope().error });
    }
    if (resume && prepared.request.n > Math.max(1, prepared.routes[0]?.adapter.capabilities.maxImagesPerCall ?? 1)) {
      // Only single-call jobs carry one handle; a batch cannot be resumed call by call.
      await release('the instance running the job stopped; a batch cannot be resumed');
      return end({
        status: 'failed',
        error: envelope(
          'The server running this job stopped and the batch cannot be resumed. You were not charged.',
          'job_interrupted',
          'api_error',
        ),
      });
    }

    const now = Date.now();
    // Written before any upstream call: a crash from here on is judged by it (never resubmitted).
    if (!(await update({ status: 'in_progress', startedAt: job.startedAt ?? now, upstream: resume ? job.upstream : { state: 'calling' } })))
      return;

    const results: Array<{ fileId: string; index: number; revisedPrompt?: string }> = [];
    let outcome: Awaited<ReturnType<typeof images.execute>>;
    try {
      outcome = await images.execute(prepared, job.requestId, {
        signal: entry.abort.signal,
        resume,
        onPartialImage: (partial) => this.deps.jobs.notify(job.id, { kind: 'partial', partial }),
        onAccepted: (accepted) => void update({ upstream: { state: 'accepted', route: accepted.route, handle: accepted.handle } }),
        onImage: async (image) => {
          const bytes = decodeBase64Text(image.base64);
          const file = await this.deps.files.save({
            accountId: job.accountId,
            jobId: job.id,
            kind: 'result',
            bytes,
            mediaType: image.mediaType,
          });
          results.push({
            fileId: file.id,
            index: image.index,
            ...(image.revisedPrompt !== undefined ? { revisedPrompt: image.revisedPrompt } : {}),
          });
        },
      });
    } catch (error) {
      // execute released the hold (nothing delivered); release again is a no-op then, and covers a failure before it.
      await release(entry.cancelled ? 'cancelled by the caller' : 'the job failed');
      if (entry.cancelled) return end({ status: 'cancelled', error: cancelledError() });
      const gatewayError =
        error instanceof GatewayError ? error : new GatewayError('The generation failed.', { status: 500, type: 'api_error' });
      return end({ status: 'failed', error: gatewayError.toEnvelope().error });
    }
    const first = outcome.images[0];
    const base = (job.request as unknown as StoredJobRequest).baseUrl;
    const data = await Promise.all(
      results.map(async (entryResult) => {
        const file = (await this.deps.files.get(entryResult.fileId))!;
        return {
          url: this.deps.files.link(file, base),
          ...(entryResult.revisedPrompt !== undefined ? { revised_prompt: entryResult.revisedPrompt } : {}),
          index: entryResult.index,
        };
      }),
    );
    const result: Record<string, unknown> = {
      created: Math.floor(now / 1000),
      model: prepared.model.id,
      size: `${first.width}x${first.height}`,
      data,
      usage: usageObject(outcome.usage, outcome.cost),
      ...(outcome.warnings.length ? { warnings: outcome.warnings } : {}),
    };
    const expiresAt = Math.min(...(await Promise.all(results.map(async (item) => (await this.deps.files.get(item.fileId))!.expiresAt))));
    await end({
      status: 'succeeded',
      result,
      expiresAt,
      ...(outcome.partialFailure ? { error: outcome.partialFailure.toEnvelope().error } : {}),
    });
  }

  /** The charge was settled but the instance stopped before recording the result: the result is rebuilt from its files. */
  private async completeSettled(
    job: JobRecord,
    hold: RequestRecord,
    end: (patch: JobPatch & { status: 'succeeded' }) => Promise<void>,
  ): Promise<void> {
    const files = await this.deps.store.listJobFiles(job.id, 'result');
    const base = (job.request as unknown as StoredJobRequest).baseUrl;
    const size = typeof hold.detail?.size === 'string' ? hold.detail.size : undefined;
    await end({
      status: 'succeeded',
      expiresAt: files.length ? Math.min(...files.map((file) => file.expiresAt)) : Date.now(),
      result: {
        created: Math.floor((job.startedAt ?? job.createdAt) / 1000),
        model: job.model,
        ...(size ? { size } : {}),
        data: files.slice(0, hold.images).map((file, index) => ({ url: this.deps.files.link(file, base), index })),
        usage: usageObject(undefined, hold.cost),
      },
    });
  }

  /** Keeps the leases of running jobs; a job cancelled elsewhere is stopped, a job whose lease was lost is abandoned here. */
  private async renewLeases(): Promise<void> {
    if (this.running.size === 0) return;
    const ids = [...this.running.keys()];
    let held: Awaited<ReturnType<Store['renewJobLeases']>>;
    try {
      held = await this.deps.store.renewJobLeases(this.owner, ids, Date.now() + this.deps.config.leaseMs);
    } catch (error) {
      this.deps.logger.error({ err: error }, 'could not renew job leases');
      return;
    }
    const still = new Map(held.map((job) => [job.id, job]));
    for (const id of ids) {
      const record = still.get(id);
      if (record?.cancelRequested) this.cancelLocal(id);
      else if (!record && this.running.has(id)) {
        this.deps.logger.warn({ jobId: id }, 'job lease lost; stopping it here');
        this.running.get(id)!.abort.abort(new DOMException('The job lease was lost.', 'AbortError'));
      }
    }
  }
}
