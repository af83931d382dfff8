import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, invalidRequest } from '../../domain/errors.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import type { AccountService } from '../../services/accounts.ts';
import { fingerprintImageRequest, type PreparedImageRequest } from '../../services/image-generation.ts';
import type { HostedFiles } from '../../services/jobs/hosted-files.ts';
import { JOB_STATUSES, type JobEvent, type JobRecord, type JobService, type JobStatus } from '../../services/jobs/job-service.ts';
import type { WebhookService } from '../../services/jobs/webhooks.ts';
import type { Authenticate } from '../authenticate.ts';
import { admitAndReserve } from '../billed-answer.ts';
import { openSse } from '../sse.ts';

export interface JobRouteDeps {
  jobs: JobService;
  files: HostedFiles;
  authenticate: Authenticate;
  keepaliveIntervalMs: number;
  /** How often an events stream looks at the store for changes made by other instances. */
  pollMs: number;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const ENDED: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

/**
 * Submits a validated image request as a job: the same Idempotency-Key handling, per-key limits and hold as a
 * synchronous call (every 4xx stays synchronous and unbilled), then 202 with Location and the job object.
 */
export async function submitImageJob(
  request: FastifyRequest,
  reply: FastifyReply,
  prepared: PreparedImageRequest,
  webhookUrl: string | undefined,
  deps: { jobs: JobService; metrics: Metrics },
): Promise<FastifyReply> {
  const caller = request.caller;
  const requestId = String(request.id);
  // The steps before the work are answerBilled's (billed-answer.ts); the work itself is the worker's.
  const started = await admitAndReserve(request, reply, caller, prepared, {
    service: deps.jobs,
    fingerprint: (job) => `job:${webhookUrl ?? ''}:${fingerprintImageRequest(job)}`,
    onRejected: () => deps.metrics.imageRejected(prepared.model.id, prepared.endpoint),
  });
  if (started.kind === 'replayed') return started.reply;
  const { admission, idempotent } = started;
  let job: JobRecord;
  try {
    job = await deps.jobs.submit(caller, prepared, {
      requestId,
      idempotencyKey: typeof request.headers['idempotency-key'] === 'string' ? request.headers['idempotency-key'] : undefined,
      webhookUrl,
      origin: requestOrigin(request),
    });
  } catch (error) {
    await idempotent?.abandon();
    throw error;
  } finally {
    await admission.release();
  }
  const body = JSON.stringify(await deps.jobs.toJson(job));
  const headers = { location: `/v1/images/jobs/${job.id}`, 'preference-applied': 'respond-async' };
  // The job, not its outcome, is what a retry with the same key gets back: the same id to poll.
  await idempotent?.complete({ status: 202, headers: { 'content-type': JSON_TYPE, ...headers }, body });
  return reply.code(202).headers(headers).type(JSON_TYPE).send(body);
}

export function registerJobRoutes(app: FastifyInstance, deps: JobRouteDeps): void {
  const jobId = (request: FastifyRequest) => (request.params as { id: string }).id;
  const preHandler = deps.authenticate();

  app.get('/v1/images/jobs/:id', { preHandler }, async (request) => {
    const job = await deps.jobs.get(request.caller, jobId(request));
    return deps.jobs.toJson(job, { inline: true });
  });

  app.get('/v1/images/jobs', { preHandler }, async (request) => {
    const who = request.caller;
    const query = request.query as Record<string, unknown>;
    const status = query.status;
    if (status !== undefined && !JOB_STATUSES.includes(status as JobStatus)) {
      throw invalidRequest(`'status' must be one of ${JOB_STATUSES.join(', ')}.`, 'status', 'invalid_value');
    }
    const limit = query.limit === undefined ? 20 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100)
      throw invalidRequest("'limit' must be a whole number from 1 to 100.", 'limit', 'invalid_value');
    const after = query.after;
    if (after !== undefined && (typeof after !== 'string' || after.length > 100))
      throw invalidRequest("'after' must be a job id.", 'after', 'invalid_value');
    const jobs = await deps.jobs.list(who, {
      status: status as JobStatus | undefined,
      limit: limit + 1,
      after: after as string | undefined,
    });
    const page = jobs.slice(0, limit);
    return {
      object: 'list',
      data: await Promise.all(page.map((job) => deps.jobs.toJson(job))),
      first_id: page[0]?.id ?? null,
      last_id: page.at(-1)?.id ?? null,
      has_more: jobs.length > limit,
    };
  });

  app.post('/v1/images/jobs/:id/cancel', { preHandler }, async (request) => {
    const job = await deps.jobs.cancel(request.caller, jobId(request));
    return deps.jobs.toJson(job);
  });

  // SSE: the current state first (so a late joiner is never behind), then each change, partial images when the
  // model streams them on this instance, and the final state; the stream ends when the job does.
  app.get('/v1/images/jobs/:id/events', { preHandler }, async (request, reply) => {
    let job = await deps.jobs.get(request.caller, jobId(request));
    const sse = openSse(reply, {});
    sse.startKeepalive(deps.keepaliveIntervalMs);
    let lastStatus: JobStatus | undefined;
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    let unsubscribe = () => {};
    const finish = () => {
      if (finished) return;
      finished = true;
      if (timer) clearInterval(timer);
      unsubscribe();
      sse.end();
    };
    const send = async (current: JobRecord) => {
      if (finished || current.status === lastStatus) return;
      lastStatus = current.status;
      sse.event(
        `image.job.${current.status}`,
        JSON.stringify({ type: `image.job.${current.status}`, data: await deps.jobs.toJson(current) }),
      );
      if (ENDED.includes(current.status)) finish();
    };
    unsubscribe = deps.jobs.subscribe(job.id, (event: JobEvent) => {
      if (event.kind === 'partial') {
        const partial = event.partial;
        sse.event(
          'image.job.partial_image',
          JSON.stringify({
            type: 'image.job.partial_image',
            job_id: job.id,
            b64_json: typeof partial.base64 === 'string' ? partial.base64 : partial.base64.toString('latin1'),
            partial_image_index: partial.partialImageIndex,
            image_index: partial.imageIndex,
          }),
        );
      } else void send(event.job).catch(() => finish());
    });
    reply.raw.on('close', finish);
    await send(job);
    if (finished) return reply;
    // Other instances run jobs too: their changes are read from the store.
    timer = setInterval(() => {
      void deps.jobs
        .find(job.id)
        .then((fresh) => {
          if (fresh) {
            job = fresh;
            return send(fresh);
          }
        })
        .catch(() => {});
    }, deps.pollMs);
    return reply;
  });

  // Hosted results: a signed link works without a key until it expires; the owner's key works without a signature.
  app.get('/v1/files/:id/content', async (request, reply) => {
    const id = jobId(request);
    const query = request.query as Record<string, unknown>;
    let ownerAccount: string | undefined;
    if (query.signature !== undefined || query.expires !== undefined) {
      const expires = Number(query.expires);
      const signature = typeof query.signature === 'string' ? query.signature : '';
      if (!Number.isInteger(expires) || !deps.files.verifyLink(id, expires, signature))
        throw linkRefused('This link is not valid (its signature does not match).');
      if (expires * 1000 <= Date.now()) throw linkRefused('This link has expired.');
    } else {
      await preHandler(request);
      ownerAccount = request.caller.accountId;
    }
    const found = await deps.files.read(id);
    if (!found || (ownerAccount !== undefined && found.file.accountId !== ownerAccount) || found.file.kind !== 'result')
      throw fileNotFound();
    return reply
      .headers({
        'cache-control': 'private, max-age=3600',
        'content-length': String(found.bytes.length),
        'x-content-type-options': 'nosniff',
      })
      .type(found.file.mediaType)
      .send(found.bytes);
  });
}

/** Operator routes of an account's webhook settings, mounted inside the admin API (its token or operator session). */
export function registerWebhookAdminRoutes(admin: FastifyInstance, deps: { webhooks: WebhookService; accounts: AccountService }): void {
  const account = async (request: FastifyRequest) => (await deps.accounts.getAccount((request.params as { id: string }).id)).id;
  // Creates or rotates the signing secret and shows it once; during a rotation both signatures are sent for 24 h.
  admin.post('/admin/v1/accounts/:id/webhook-secret', async (request, reply) => {
    const rotated = await deps.webhooks.rotateSecret(await account(request));
    return reply.code(201).send({
      object: 'webhook_secret',
      secret: rotated.secret,
      previous_secret_valid_until: rotated.previousValidUntil === null ? null : Math.floor(rotated.previousValidUntil / 1000),
    });
  });
  admin.get('/admin/v1/accounts/:id/webhook', async (request) => settingsJson(await deps.webhooks.settings(await account(request))));
  // The account's default webhook_url for jobs that name none ({"url": null} clears it).
  admin.put('/admin/v1/accounts/:id/webhook', async (request) => {
    const id = await account(request);
    const url = (request.body as { url?: unknown } | null)?.url;
    if (url !== null && typeof url !== 'string')
      throw invalidRequest("'url' must be a URL string, or null to clear it.", 'url', 'invalid_type');
    return settingsJson(await deps.webhooks.setDefaultUrl(id, url));
  });
}

function settingsJson(settings: { defaultUrl: string | null; sealedSecret: string | null; previousUntil: number | null } | undefined) {
  return {
    object: 'webhook_settings',
    url: settings?.defaultUrl ?? null,
    has_secret: Boolean(settings?.sealedSecret),
    previous_secret_valid_until: settings?.previousUntil ? Math.floor(settings.previousUntil / 1000) : null,
  };
}

/** The request's origin (`https://host`): the base of hosted links when DEEPSHI_PUBLIC_URL is unset. */
export function requestOrigin(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}`;
}

function linkRefused(message: string): GatewayError {
  return new GatewayError(message, { status: 403, type: 'invalid_request_error', code: 'invalid_signature' });
}

function fileNotFound(): GatewayError {
  return new GatewayError('No such file (hosted results are deleted when they expire).', {
    status: 404,
    type: 'invalid_request_error',
    code: 'not_found',
  });
}
