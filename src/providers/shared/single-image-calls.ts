import { addUsage } from '../../domain/usage.ts';
import type { Warning } from '../../domain/warnings.ts';
import {
  ProviderError,
  type GeneratedImage,
  type ImageCallContext,
  type ImageGenerationResult,
  type NormalizedImageRequest,
  type UpstreamUsage,
} from '../types.ts';

export interface SingleImageOutcome {
  image: GeneratedImage;
  warnings: Warning[];
  usage?: UpstreamUsage;
}

/**
 * For upstreams that make one image per call (BFL, Ark). The pipeline fans `n` out by the FIRST route's
 * maxImagesPerCall, so a one-image route behind a multi-image one (seedream-4.5: fal, then Ark on failover)
 * can still be handed n > 1: it is split here into parallel single-image calls, seed + i each.
 *
 * Each image goes to context.onImage as soon as it is ready. When some calls fail after others delivered, the
 * failure is rethrown as accepted (the pipeline keeps the delivered images and must not repeat the batch).
 */
export async function eachImageCall(
  request: NormalizedImageRequest,
  context: ImageCallContext,
  generateOne: (call: NormalizedImageRequest) => Promise<SingleImageOutcome>,
): Promise<ImageGenerationResult> {
  const calls = Array.from({ length: request.n }, (_, index) => ({
    ...request,
    n: 1,
    seed: request.seed === undefined ? undefined : (request.seed + index) % 2 ** 32,
  }));
  const images: GeneratedImage[] = [];
  const settled = await Promise.allSettled(
    calls.map(async (call, index) => {
      const outcome = await generateOne(call);
      images.push(outcome.image);
      context.onImage?.(outcome.image, index);
      return outcome;
    }),
  );
  const succeeded = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failures = settled.flatMap((result) => (result.status === 'rejected' ? [result.reason as unknown] : []));
  // One set of warnings per batch: the calls share a request, so they warn alike.
  const warnings = dedupe(succeeded.flatMap((outcome) => outcome.warnings));
  const usage = addUsage(succeeded.map((outcome) => outcome.usage));
  if (failures.length > 0) {
    const accepted = failures.find((error) => error instanceof ProviderError && error.accepted);
    const first = accepted ?? failures[0];
    if (succeeded.length === 0) throw first;
    if (first instanceof ProviderError) {
      throw new ProviderError(first.kind === 'refused' ? 'refused' : 'failed', first.message, {
        accepted: true,
        param: first.param,
        cause: first,
      });
    }
    throw new ProviderError('failed', 'an upstream call failed', { accepted: true, cause: first });
  }
  return { images, warnings, usage, imagesDelivered: true };
}

function dedupe(warnings: Warning[]): Warning[] {
  const seen = new Set<string>();
  return warnings.filter((warning) => {
    const key = `${warning.param ?? ''}\u0000${warning.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
