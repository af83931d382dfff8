import { invalidRequest } from '../domain/errors.ts';
import { probeImage } from './probe.ts';

/**
 * Format and pixel count from the file's first bytes (never a decode). Returns undefined while the header may
 * still be incomplete (and `final` is false); throws 400 for anything that is not PNG/JPEG/WebP or is too large.
 */
export function checkUploadHeader(
  bytes: Buffer,
  maxPixels: number,
  ordinal: number,
  final: boolean,
): { format: 'png' | 'jpeg' | 'webp'; width: number; height: number } | undefined {
  if (bytes.length < 12 && !final) return undefined;
  const signature = sniff(bytes);
  if (signature !== 'png' && signature !== 'jpeg' && signature !== 'webp') {
    throw invalidRequest(
      `Image ${ordinal} is ${signature === 'gif' ? 'a GIF' : 'not a PNG, JPEG or WebP file'}; edits accept image/png, image/jpeg and image/webp.`,
      'image',
      'unsupported_file_type',
    );
  }
  const probe = probeImage(bytes);
  if (!probe) {
    // PNG and WebP headers sit in the first 30 bytes; only a JPEG's frame header can come later.
    if (final || (signature !== 'jpeg' && bytes.length >= 64)) {
      throw invalidRequest(
        `Image ${ordinal} is not a decodable ${signature.toUpperCase()} file (its header is missing or corrupt).`,
        'image',
        'invalid_image',
      );
    }
    return undefined;
  }
  if (probe.width * probe.height > maxPixels) {
    throw invalidRequest(
      `Image ${ordinal} is ${probe.width}x${probe.height} (${Math.round((probe.width * probe.height) / 1e6)} MP); this server accepts images up to ${formatPixels(maxPixels)}.`,
      'image',
      'image_too_large',
    );
  }
  return { format: signature, width: probe.width, height: probe.height };
}

function sniff(b: Buffer): 'png' | 'jpeg' | 'webp' | 'gif' | 'other' {
  if (b.length >= 8 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  if (b.length >= 6 && /^GIF8[79]a$/.test(b.toString('latin1', 0, 6))) return 'gif';
  return 'other';
}

function formatPixels(pixels: number): string {
  return pixels >= 1e6 ? `${Math.round(pixels / 1e5) / 10} megapixels` : `${pixels} pixels`;
}
