import sharp, { type Sharp } from 'sharp';
import { probeImage, type ProbedFormat } from './probe.ts';

/**
 * Re-encoding between the output formats the API offers (`output_format`: png, jpeg, webp).
 * Used when an upstream's native format differs from what the caller asked for.
 */

export type OutputFormat = 'png' | 'jpeg' | 'webp';

export type MediaType = 'image/png' | 'image/jpeg' | 'image/webp' | 'image/gif';

const MEDIA_TYPES: Record<ProbedFormat, MediaType> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
};

/** The IANA media type for a format name (what goes into Content-Type and data URLs). */
export function mediaTypeOf(format: ProbedFormat): MediaType {
  return MEDIA_TYPES[format];
}

/**
 * Encoder settings, shared with the sketch renderer so every image the gateway itself encodes looks alike.
 * - jpeg/webp quality 90: visually lossless for generated art, about a third of PNG's size.
 * - png compressionLevel 6: zlib's default balance; 9 costs ~2-3x the CPU for a few percent.
 * None of these write timestamps or metadata (sharp strips metadata unless asked), so equal pixels
 * give byte-identical files, which the deterministic dev renderer relies on.
 */
export function applyEncoder(pipeline: Sharp, to: OutputFormat, quality = DEFAULT_QUALITY): Sharp {
  switch (to) {
    case 'png':
      return pipeline.png({ compressionLevel: 6 });
    case 'jpeg':
      // JPEG has no alpha: flatten onto white (what users expect from "transparent" areas) instead of black.
      return pipeline.flatten({ background: '#ffffff' }).jpeg({ quality: encoderQuality(quality) });
    case 'webp':
      return pipeline.webp({ quality: encoderQuality(quality) });
  }
}

const DEFAULT_QUALITY = 90;

/** OpenAI's output_compression (0-100, 100 = best quality) as the encoder's quality (1-100). */
function encoderQuality(compression: number): number {
  return Math.min(100, Math.max(1, Math.round(compression)));
}

/**
 * Converts `bytes` (any format sharp reads; the first frame of animations) to `to`, at `quality` for jpeg/webp
 * (the caller's output_compression; 90 by default).
 *
 * When the input already is `to` (by header probe) the bytes are returned untouched: re-encoding a JPEG or WebP
 * as itself only loses quality and burns CPU, and upstream provenance metadata (e.g. C2PA) survives.
 * Otherwise EXIF orientation is applied first, because encoding strips metadata and a phone photo would
 * otherwise come out sideways. Throws (sharp's error) on bytes that are not a decodable image, or larger than `maxPixels`.
 */
export async function transcode(bytes: Buffer, to: OutputFormat, maxPixels?: number, quality?: number): Promise<Buffer> {
  if (probeImage(bytes)?.format === to) return bytes;
  // limitInputPixels: sharp refuses, from the header, an input larger than this before decoding it.
  return applyEncoder(sharp(bytes, maxPixels ? { limitInputPixels: maxPixels } : {}).autoOrient(), to, quality).toBuffer();
}
