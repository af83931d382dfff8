import type { JobRecord, WebhookDelivery } from '../../store/jobs.ts';

/** What a job's stored `request` holds: the validated request (no input images: those are hosted files) and where links point. */
export interface StoredJobRequest {
  envelope: {
    request: Record<string, unknown>;
    responseFormat: 'b64_json' | 'url';
    warnings: Array<{ type: string; param?: string; message: string }>;
  };
  /** Origin for result links: DEEPSHI_PUBLIC_URL, else the submitting request's origin. */
  baseUrl: string;
}

const seconds = (ms: number | null) => (ms === null ? null : Math.floor(ms / 1000));

/**
 * The public job object (docs/jobs.md): `result` is the body a synchronous call would have returned, with hosted
 * links (and, when `inline` gives them, the images' base64 for b64_json callers); `error` the error envelope's object.
 */
export function jobJson(job: JobRecord, deliveries: WebhookDelivery[], inline?: string[]): Record<string, unknown> {
  let result = job.result;
  if (result && inline && Array.isArray(result.data)) {
    result = {
      ...result,
      data: (result.data as Array<Record<string, unknown>>).map((item, index) => ({ ...item, b64_json: inline[index] })),
    };
  }
  return {
    id: job.id,
    object: 'image.job',
    status: job.status,
    model: job.model,
    endpoint: job.endpoint === 'images.edits' ? '/v1/images/edits' : '/v1/images/generations',
    created_at: seconds(job.createdAt),
    started_at: seconds(job.startedAt),
    completed_at: seconds(job.completedAt),
    expires_at: seconds(job.expiresAt),
    result,
    error: job.error,
    webhook:
      job.webhookUrl === null && deliveries.length === 0
        ? null
        : {
            url: deliveries[0]?.url ?? job.webhookUrl,
            deliveries: deliveries.map((delivery) => ({
              id: delivery.id,
              event: delivery.eventType,
              status: delivery.status,
              next_attempt_at: seconds(delivery.nextAttemptAt),
              attempts: delivery.attempts.map((attempt) => ({
                at: seconds(attempt.at),
                status: attempt.status,
                ...(attempt.error ? { error: attempt.error } : {}),
              })),
            })),
          },
  };
}
