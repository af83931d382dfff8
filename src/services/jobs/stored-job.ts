import { quoteImageRequest } from '../../billing/pricing.ts';
import type { Caller } from '../../domain/caller.ts';
import { GatewayError } from '../../domain/errors.ts';
import type { InputImage, NormalizedImageRequest } from '../../domain/requests.ts';
import { probeImage } from '../../images/probe.ts';
import type { JobRecord } from '../../store/jobs.ts';
import type { ImageGenerationService, PreparedImageRequest } from '../image-generation.ts';
import type { HostedFiles } from './hosted-files.ts';
import type { StoredJobRequest } from './job-json.ts';

/** A stored job read back for the worker (job-worker.ts): its request, its key as a caller, and its error objects. */

/** Rebuilds the prepared request from what the job stored: the same model, routes and quote as when it was submitted. */
export async function prepareStoredJob(job: JobRecord, images: ImageGenerationService, files: HostedFiles): Promise<PreparedImageRequest> {
  const stored = job.request as unknown as StoredJobRequest;
  const { model, routes: all } = images.resolveModel(callerOf(job), job.model);
  const inputImages: InputImage[] = [];
  for (const fileId of job.inputFiles) {
    const read = await files.read(fileId);
    const probe = read ? probeImage(read.bytes) : null;
    if (!read || !probe || probe.format === 'gif')
      throw new GatewayError('An input image of this job is no longer available.', {
        status: 500,
        type: 'api_error',
        code: 'job_input_missing',
      });
    inputImages.push({ bytes: read.bytes, mediaType: `image/${probe.format}`, width: probe.width, height: probe.height });
  }
  const request = { ...(stored.envelope.request as unknown as NormalizedImageRequest), inputImages };
  const routes = job.endpoint === 'images.edits' ? all.filter((route) => route.adapter.capabilities.supportsEdits) : all;
  if (routes.length === 0)
    throw new GatewayError(`${model.id} cannot be served right now.`, { status: 503, type: 'api_error', code: 'model_unavailable' });
  return {
    request,
    responseFormat: stored.envelope.responseFormat,
    stream: false,
    warnings: stored.envelope.warnings as PreparedImageRequest['warnings'],
    model,
    routes,
    quote: quoteImageRequest(model, request),
    endpoint: job.endpoint,
  };
}

/** The job's key as a caller: permissions were checked at submission, so every model is allowed here. */
export function callerOf(job: JobRecord): Caller {
  return { keyId: job.keyId, accountId: job.accountId, models: null };
}

export function envelope(message: string, code: string, type = 'invalid_request_error'): Record<string, unknown> {
  return { message, type, code, param: null };
}

export function cancelledError(): Record<string, unknown> {
  return envelope('The job was cancelled; you were not charged.', 'cancelled');
}
