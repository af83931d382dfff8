import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { renderSketch } from '../../src/images/sketch.ts';
import type {
  ProviderError,
  ImageAdapter,
  ImageCallContext,
  ImageGenerationResult,
  NormalizedImageRequest,
} from '../../src/providers/types.ts';

/**
 * A scriptable upstream for pipeline tests (faults, delays, partial failures). It is test code: the real
 * adapters are tested against simulators of their providers.
 */
export interface ScriptedBehaviour {
  /** Wait before each image. */
  delayMs?: number;
  /** Throw this after delivering `failAfter` images (default: before any). */
  error?: ProviderError | Error;
  failAfter?: number;
  /** Return bytes that are not an image. */
  garbage?: boolean;
}

export class ScriptedAdapter implements ImageAdapter {
  readonly provider = 'scripted';
  readonly capabilities = {
    maxImagesPerCall: 4,
    supportsSeed: true,
    supportsPartialImages: true,
    supportsEdits: true,
    nativeFormats: ['png' as const],
  };
  behaviour: ScriptedBehaviour = {};
  calls = 0;

  isConfigured(): boolean {
    return true;
  }

  async generate(request: NormalizedImageRequest, _route: unknown, context: ImageCallContext): Promise<ImageGenerationResult> {
    this.calls++;
    const behaviour = this.behaviour;
    const images: ImageGenerationResult['images'] = [];
    for (let index = 0; index < request.n; index++) {
      if (behaviour.error && index === (behaviour.failAfter ?? 0)) throw behaviour.error;
      if (behaviour.delayMs) await sleep(behaviour.delayMs, context.signal);
      const base64 = behaviour.garbage
        ? Buffer.from('not an image at all').toString('base64')
        : (
            await renderSketch({ prompt: request.prompt, seed: index, width: request.width, height: request.height, format: 'png' })
          ).toString('base64');
      const image = { base64, mediaType: 'image/png' };
      images.push(image);
      context.onImage?.(image, index);
    }
    if (behaviour.error && (behaviour.failAfter ?? 0) >= request.n) throw behaviour.error;
    return { images, warnings: [], imagesDelivered: true };
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

const SHIPPED = path.resolve(import.meta.dirname, '../../catalog/models.yaml');

/**
 * The shipped catalog plus test models: `scripted-image` (routed to ScriptedAdapter, $0.01 per image)
 * and `vendor/sketch` (an id with a slash, offline).
 */
export function testCatalogJson(): string {
  const catalog = parseYaml(fs.readFileSync(SHIPPED, 'utf8'));
  const sketch = catalog.models.find((model: { id: string }) => model.id === 'deepshi-sketch');
  catalog.models.push(
    {
      ...structuredClone(sketch),
      id: 'scripted-image',
      name: 'Scripted test upstream',
      max_partial_images: 0,
      pricing: { unit: 'image', base: '0.01' },
      routes: [{ provider: 'scripted' }],
    },
    { ...structuredClone(sketch), id: 'vendor/sketch', name: 'Sketch with a slash in its id' },
  );
  return JSON.stringify(catalog);
}
