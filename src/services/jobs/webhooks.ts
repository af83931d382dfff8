import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import type { Logger } from 'pino';
import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';
import type { JobsConfig } from '../../config/config.ts';
import { invalidRequest } from '../../domain/errors.ts';
import { guardedLookup, isForbiddenAddress } from '../../providers/shared/safe-download.ts';
import type { JobRecord, WebhookDelivery, WebhookEventType, WebhookSettings } from '../../store/jobs.ts';
import type { Store } from '../../store/types.ts';
import type { ServerKeys } from './secrets.ts';

/** How long the secret before a rotation keeps being signed with (both signatures are sent meanwhile). */
export const ROTATION_OVERLAP_MS = 24 * 3_600_000;
const MAX_PAYLOAD_BYTES = 20 * 1024;

/**
 * A webhook target: HTTPS to a public host, unless the operator allows private targets (which also allows HTTP).
 * Addresses are checked again when delivering (DNS may say anything later).
 */
export function checkWebhookUrl(raw: string, allowPrivate: boolean): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalidRequest(
      "'webhook_url' must be an absolute URL such as https://example.com/hooks/deepshi.",
      'webhook_url',
      'invalid_value',
    );
  }
  if (raw.length > 2048) throw invalidRequest("'webhook_url' must be at most 2048 characters.", 'webhook_url', 'invalid_value');
  if (url.username || url.password) throw invalidRequest("'webhook_url' must not carry credentials.", 'webhook_url', 'invalid_value');
  const allowedProtocols = allowPrivate ? ['https:', 'http:'] : ['https:'];
  if (!allowedProtocols.includes(url.protocol)) throw invalidRequest("'webhook_url' must use https.", 'webhook_url', 'invalid_value');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!allowPrivate && (host === 'localhost' || host.endsWith('.localhost') || (net.isIP(host) && isForbiddenAddress(host)))) {
    throw invalidRequest(
      "'webhook_url' must be a public address (private, loopback and link-local targets are refused).",
      'webhook_url',
      'invalid_value',
    );
  }
  return url;
}

/**
 * Webhooks per the Standard Webhooks specification, signed with the `standardwebhooks` package: each account has a
 * `whsec_…` secret (sealed in the database); a job that ends queues one delivery per event, which any instance sends
 * with the same webhook-id on every attempt, retried on a durable schedule until a 2xx (410 stops it).
 */
export class WebhookService {
  private readonly owner = `webhooks-${randomUUID().slice(0, 8)}`;
  private readonly agent: Agent;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly deps: {
      store: Store;
      keys: ServerKeys;
      logger: Logger;
      config: JobsConfig;
      onOutcome?: (outcome: 'succeeded' | 'retry' | 'failed') => void;
    },
  ) {
    const { config } = deps;
    this.agent = new Agent({
      connect: { ...(config.webhooksAllowPrivate ? {} : { lookup: guardedLookup as never }), timeout: 10_000 },
      headersTimeout: config.webhookTimeoutMs,
      bodyTimeout: config.webhookTimeoutMs,
    });
  }

  async hasSecret(accountId: string): Promise<boolean> {
    return Boolean((await this.deps.store.getWebhookSettings(accountId))?.sealedSecret);
  }

  /** Creates the account's secret, or rotates it (the old one is still signed with for ROTATION_OVERLAP_MS). Returns it once. */
  async rotateSecret(accountId: string): Promise<{ secret: string; previousValidUntil: number | null }> {
    const now = Date.now();
    const current = await this.deps.store.getWebhookSettings(accountId);
    const secret = `whsec_${randomBytes(32).toString('base64')}`;
    const previous = current?.sealedSecret ?? null;
    const previousUntil = previous ? now + ROTATION_OVERLAP_MS : null;
    await this.deps.store.setWebhookSecret(accountId, this.deps.keys.seal(secret), previous, previousUntil, now);
    return { secret, previousValidUntil: previousUntil };
  }

  async setDefaultUrl(accountId: string, url: string | null): Promise<WebhookSettings> {
    if (url !== null) checkWebhookUrl(url, this.deps.config.webhooksAllowPrivate);
    return this.deps.store.setWebhookDefaultUrl(accountId, url, Date.now());
  }

  async settings(accountId: string): Promise<WebhookSettings | undefined> {
    return this.deps.store.getWebhookSettings(accountId);
  }

  /** Queues the event of an ended job to its webhook_url (or the account default); nothing when there is neither. */
  async enqueue(job: JobRecord, jobObject: Record<string, unknown>): Promise<WebhookDelivery | undefined> {
    const settings = await this.deps.store.getWebhookSettings(job.accountId);
    const url = job.webhookUrl ?? settings?.defaultUrl ?? null;
    if (url === null) return undefined;
    if (!settings?.sealedSecret) {
      this.deps.logger.warn({ jobId: job.id }, 'webhook not sent: the account has no webhook signing secret');
      return undefined;
    }
    const type = `image.job.${job.status}` as WebhookEventType;
    const now = Date.now();
    // Links only, never base64: the job object built without inlined images.
    const payload = JSON.stringify({ type, timestamp: new Date(now).toISOString(), data: { ...jobObject, webhook: undefined } });
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES)
      this.deps.logger.warn({ jobId: job.id, bytes: Buffer.byteLength(payload) }, 'webhook payload above 20 KB');
    const delivery = await this.deps.store.createWebhookDelivery({
      id: `msg_${randomUUID().replace(/-/g, '')}`,
      jobId: job.id,
      accountId: job.accountId,
      url,
      eventType: type,
      payload,
      nextAttemptAt: now,
      createdAt: now,
    });
    this.wake();
    return delivery;
  }

  /** Starts delivering (every instance does: each delivery is claimed by one at a time). */
  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  wake(): void {
    if (!this.stopped && this.timer !== undefined) this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    await this.agent.close().catch(() => {});
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.running) return this.schedule(this.deps.config.pollMs);
      this.running = this.deliverDue()
        .then(() => undefined)
        .catch((error: unknown) => this.deps.logger.error({ err: error }, 'webhook delivery loop failed'))
        .finally(() => {
          this.running = undefined;
          this.schedule(this.deps.config.pollMs);
        });
    }, delayMs);
    this.timer.unref();
  }

  /** Sends every due delivery once; returns how many were attempted. */
  async deliverDue(): Promise<number> {
    const now = Date.now();
    const due = await this.deps.store.claimDueWebhookDeliveries(this.owner, now, now + 2 * this.deps.config.webhookTimeoutMs + 10_000, 20);
    await Promise.all(due.map((delivery) => this.attempt(delivery)));
    return due.length;
  }

  private async attempt(delivery: WebhookDelivery): Promise<void> {
    const { store, config, logger } = this.deps;
    const at = Date.now();
    let status: number | null = null;
    let retryAfterMs: number | undefined;
    let error: string | undefined;
    try {
      const url = checkWebhookUrl(delivery.url, config.webhooksAllowPrivate);
      const headers = await this.sign(delivery, new Date(at));
      const response = await request(url, {
        method: 'POST',
        dispatcher: this.agent,
        body: delivery.payload,
        headers: { 'content-type': 'application/json', 'user-agent': 'Deepshi-Webhooks/1', ...headers },
        signal: AbortSignal.timeout(config.webhookTimeoutMs),
      });
      status = response.statusCode;
      retryAfterMs = parseRetryAfter(response.headers['retry-after']);
      await response.body.dump({ limit: 64 * 1024 }).catch(() => {});
    } catch (caught) {
      const code = (caught as { code?: string }).code;
      error =
        code === 'EADDRNOTALLOWED'
          ? 'target resolves to a forbidden address'
          : (caught as Error).name === 'GatewayError'
            ? (caught as Error).message
            : (code ?? 'no answer');
    }
    const done = status !== null && status >= 200 && status < 300;
    const attempts = delivery.attempts.length + 1;
    let next: { status: WebhookDelivery['status']; nextAttemptAt: number | null };
    if (done) next = { status: 'succeeded', nextAttemptAt: null };
    else if (status === 410 || attempts > config.webhookRetryDelaysMs.length) next = { status: 'failed', nextAttemptAt: null };
    else {
      const planned = config.webhookRetryDelaysMs[attempts - 1];
      const jittered = planned * (0.9 + Math.random() * 0.2);
      next = {
        status: 'pending',
        nextAttemptAt: Date.now() + Math.round(retryAfterMs !== undefined ? Math.max(retryAfterMs, jittered) : jittered),
      };
    }
    const recorded = await store.recordWebhookAttempt(delivery.id, this.owner, { at, status, ...(error ? { error } : {}) }, next);
    if (!recorded) logger.warn({ deliveryId: delivery.id }, 'webhook attempt not recorded: its lease was lost');
    this.deps.onOutcome?.(next.status === 'pending' ? 'retry' : next.status);
    if (!done) logger.info({ deliveryId: delivery.id, status, error, attempts, next: next.status }, 'webhook delivery not accepted');
  }

  /** webhook-id, webhook-timestamp, webhook-signature (both secrets' signatures during a rotation, space-separated). */
  private async sign(delivery: WebhookDelivery, at: Date): Promise<Record<string, string>> {
    const settings = await this.deps.store.getWebhookSettings(delivery.accountId);
    if (!settings?.sealedSecret) throw Object.assign(new Error('the account has no webhook secret'), { name: 'GatewayError' });
    const secrets = [settings.sealedSecret];
    if (settings.sealedPreviousSecret && (settings.previousUntil ?? 0) > at.getTime()) secrets.push(settings.sealedPreviousSecret);
    const signatures = secrets.map((sealed) => new Webhook(this.deps.keys.unseal(sealed)).sign(delivery.id, at, delivery.payload));
    return {
      'webhook-id': delivery.id,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': signatures.join(' '),
    };
  }
}

/** Retry-After in seconds or as an HTTP date, capped at a day; undefined when absent or unreadable. */
function parseRetryAfter(header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const seconds = /^\d+$/.test(value.trim()) ? Number(value) * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds, 86_400_000) : undefined;
}
