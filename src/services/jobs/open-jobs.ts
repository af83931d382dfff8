import type { Logger } from 'pino';
import type { Config } from '../../config/config.ts';
import type { RequestLimiter } from '../../limits/limiter.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import { FilesystemResultStorage } from '../../store/results/filesystem-storage.ts';
import { S3ResultStorage } from '../../store/results/s3-storage.ts';
import { resolveServerSecret } from '../../store/results/server-secret.ts';
import type { Store } from '../../store/types.ts';
import type { IdempotencyService } from '../idempotency.ts';
import type { ImageGenerationService } from '../image-generation.ts';
import { HostedAnswers } from './hosted-answers.ts';
import { HostedFiles } from './hosted-files.ts';
import { JobService } from './job-service.ts';
import { JobWorker } from './job-worker.ts';
import { ServerKeys } from './secrets.ts';
import { WebhookService } from './webhooks.ts';

/**
 * Async jobs, hosted results and webhooks (docs/jobs.md). They need the server secret: DEEPSHI_SERVER_SECRET, or with
 * the embedded SQLite default a generated one kept in the data directory. With PostgreSQL and no secret they are off
 * (every instance must sign and seal with the same secret), and the log says so.
 */
export function openJobs(
  config: Config,
  deps: {
    store: Store;
    images: ImageGenerationService;
    limiter: RequestLimiter;
    idempotency: IdempotencyService;
    logger: Logger;
    metrics: Metrics;
  },
) {
  const { store, logger } = deps;
  let secret: string;
  try {
    secret = resolveServerSecret(config.jobs.serverSecret, config.jobs.dataDir, store.kind);
  } catch (error) {
    logger.warn(`${(error as Error).message} Async image jobs and hosted results are off until it is set.`);
    return undefined;
  }
  const keys = new ServerKeys(secret);
  const storage = config.jobs.s3 ? new S3ResultStorage(config.jobs.s3) : new FilesystemResultStorage(config.jobs.dataDir);
  const files = new HostedFiles({ store, storage, keys, ttlMs: config.jobs.resultTtlMs, logger });
  const webhooks = new WebhookService({
    store,
    keys,
    logger,
    config: config.jobs,
    onOutcome: (outcome) => deps.metrics.webhookAttempt(outcome),
  });
  const service = new JobService({
    store,
    files,
    webhooks,
    limiter: deps.limiter,
    idempotency: deps.idempotency,
    logger,
    config: config.jobs,
    generationTimeoutMs: config.generationTimeoutMs,
    holdGraceMs: config.holdGraceMs,
  });
  const worker = new JobWorker({
    store,
    images: deps.images,
    files,
    jobs: service,
    limiter: deps.limiter,
    logger,
    config: config.jobs,
    generationTimeoutMs: config.generationTimeoutMs,
  });
  deps.metrics.observeJobs(
    () => store.jobStats(),
    () => store.webhookDeliveryStats(),
  );
  const hostedAnswers =
    config.jobs.urlResults === 'hosted' ? new HostedAnswers({ files, publicUrl: config.jobs.publicUrl, logger }) : undefined;
  return { service, files, webhooks, worker, hostedAnswers };
}

/** Deletes expired results, and releases the holds of jobs that ended without a charge but whose instance stopped first. */
export async function sweepJobs(jobs: NonNullable<ReturnType<typeof openJobs>>, store: Store, logger: Logger): Promise<void> {
  try {
    const deleted = await jobs.files.sweep();
    if (deleted) logger.info({ deleted }, 'deleted expired result files');
    for (const job of await store.listEndedJobsWithHolds(500)) {
      if (await store.releaseReservation(job.requestId, `job ${job.status}`))
        logger.warn({ jobId: job.id }, 'released the hold of an ended job');
    }
  } catch (error) {
    logger.error({ err: error }, 'job sweeper failed');
  }
}
