import { randomInt } from 'node:crypto';
import { renderSketch } from '../../images/sketch.ts';
import type { Warning } from '../../domain/warnings.ts';
import type { ImageAdapter, ImageAdapterCapabilities, ImageCallContext, ImageGenerationResult, NormalizedImageRequest } from '../types.ts';

/**
 * `deepshi-sketch`: the built-in development model. Renders in-process with no network and no weights, so a
 * fresh clone generates, streams, edits and bills end to end with no provider keys. Deterministic per
 * (prompt, seed, size, format); image i of a batch uses seed + i so a batch differs image to image.
 */
export class OfflineSketchAdapter implements ImageAdapter {
  readonly provider = 'offline';
  readonly capabilities: ImageAdapterCapabilities = {
    maxImagesPerCall: 4,
    supportsSeed: true,
    supportsPartialImages: true,
    supportsEdits: true,
    nativeFormats: ['png', 'jpeg', 'webp'],
  };

  isConfigured(): boolean {
    return true;
  }

  async generate(request: NormalizedImageRequest, _route: unknown, context: ImageCallContext): Promise<ImageGenerationResult> {
    const format = request.outputFormat ?? 'png';
    const baseSeed = request.seed ?? randomInt(0, 2 ** 31);
    const reference = request.inputImages[0] ? { bytes: request.inputImages[0].bytes } : undefined;
    const warnings: Warning[] = [];
    // `background` is a catalog param of deepshi-sketch (auto and opaque: the sky is drawn; transparent: it is not).
    const transparent = request.params.background === 'transparent';
    if (transparent && reference) {
      warnings.push({
        type: 'unsupported',
        param: 'background',
        message: 'deepshi-sketch keeps the reference image as the background of an edit; transparent was ignored.',
      });
    } else if (transparent && format === 'jpeg') {
      warnings.push({
        type: 'unsupported',
        param: 'background',
        message: 'jpeg has no transparency; ask for png or webp. The background was drawn.',
      });
    }
    const images: ImageGenerationResult['images'] = [];
    for (let index = 0; index < request.n; index++) {
      const seed = (baseSeed + index) % 2 ** 32;
      const common = {
        prompt: request.prompt,
        seed,
        width: request.width,
        height: request.height,
        format,
        reference,
        transparent,
        quality: request.outputCompression,
      };
      for (let partial = 0; partial < request.partialImages; partial++) {
        context.signal.throwIfAborted();
        const bytes = await renderSketch({ ...common, progress: (partial + 1) / (request.partialImages + 1) });
        context.onPartialImage?.({ base64: bytes.toString('base64'), partialImageIndex: partial, imageIndex: index });
      }
      context.signal.throwIfAborted();
      const bytes = await renderSketch({ ...common, progress: 1 });
      const image = { base64: bytes.toString('base64'), mediaType: `image/${format}`, compressed: request.outputCompression !== undefined };
      images.push(image);
      context.onImage?.(image, index);
    }
    return { images, warnings, imagesDelivered: true };
  }
}
