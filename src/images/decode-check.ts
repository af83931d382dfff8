import sharp from 'sharp';
import { invalidRequest } from '../domain/errors.ts';
import type { InputImage } from '../domain/requests.ts';

/**
 * Decodes every image once, streaming and into a 16-pixel thumbnail, so a file whose header is fine but whose
 * data is truncated or corrupt is a 400 here, before the hold, and not an upstream failure later. The pixel cap
 * is already checked; libvips' own limit is set to it as well. Memory stays at a few scanlines per image.
 * `failOn: 'truncated'`: missing data fails; minor decoder warnings (extraneous bytes, ...) that browsers and
 * upstreams tolerate in real-world files do not.
 */
export async function assertDecodable(images: InputImage[], maxPixels: number): Promise<void> {
  await Promise.all(
    images.map(async (image, index) => {
      try {
        await sharp(image.bytes, { sequentialRead: true, limitInputPixels: maxPixels, failOn: 'truncated' })
          .resize(16, 16, { fit: 'inside' })
          .raw()
          .toBuffer();
      } catch {
        throw invalidRequest(
          `Image ${index + 1} could not be decoded: the ${image.mediaType.slice(6).toUpperCase()} data is truncated or corrupt.`,
          'image',
          'invalid_image',
        );
      }
    }),
  );
}
