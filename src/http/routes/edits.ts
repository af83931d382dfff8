import type { FastifyInstance } from 'fastify';
import { prepareEditUpload, refuseDeclaredOversize, registerEditMultipart, type EditLimits, type PreparedEdit } from '../edit-upload.ts';
import { runImageRequest, type ImageRouteDeps } from './images.ts';
import { submitImageJob } from './jobs.ts';

/**
 * POST /v1/images/edits: multipart/form-data with `model`, `prompt`, one or more reference images under `image[]`
 * or `image`, and every generation field as a string. Documented in docs/edits.md.
 *
 * Authenticate (before a byte of the body is read) → the upload read, checked and priced (src/http/edit-upload.ts,
 * shared with the edit's quote) → hold → generate → settle (runImageRequest, shared with generations).
 */

export type { EditLimits } from '../edit-upload.ts';

export interface EditRouteDeps extends ImageRouteDeps {
  limits: EditLimits;
}

export function registerEditRoutes(app: FastifyInstance, deps: EditRouteDeps): void {
  // An encapsulated context: the multipart parser exists for this route (and the quote's) only, the JSON endpoints keep answering 415.
  void app.register(async (scope) => {
    await registerEditMultipart(scope, deps.limits);

    scope.post(
      '/v1/images/edits',
      {
        // Before the body: an unauthenticated or oversized upload is refused without reading it. The model is in the
        // body, not read yet, so a refusal here is counted without one.
        onRequest: [
          deps.authenticate(() => deps.metrics.imageRejected(undefined, 'images.edits')),
          async (request) => {
            try {
              refuseDeclaredOversize(request, deps.limits);
            } catch (error) {
              deps.metrics.imageRejected(undefined, 'images.edits');
              throw error;
            }
          },
        ],
      },
      async (request, reply) => {
        let requested: unknown;
        let edit: PreparedEdit;
        try {
          edit = await prepareEditUpload(request, deps, (fields) => {
            requested = fields.model;
          });
        } catch (error) {
          deps.metrics.imageRejected(requested, 'images.edits');
          throw error;
        }
        const { prepared, asJob } = edit;
        if (asJob?.async) return submitImageJob(request, reply, prepared, asJob.webhookUrl, { jobs: deps.jobs!, metrics: deps.metrics });
        return runImageRequest(request, reply, prepared, deps, 'image_edit');
      },
    );
  });
}
