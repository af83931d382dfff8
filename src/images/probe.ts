/**
 * Header-only image probing: format and pixel size from the first bytes of a file, never decoding pixels.
 *
 * The gateway needs width/height/format of uploaded references and of upstream outputs on the hot path
 * (validation, billing by size, response metadata). Decoding a 4096² image for that would cost tens of
 * milliseconds and lots of memory, and handing untrusted bytes to a full decoder just to read two numbers
 * widens the attack surface. Every reader here is bounds-checked and returns null on anything it does not
 * understand; nothing throws.
 */

import { base64IndexOf, base64Slice, base64StartsWith, type Base64Text } from './base64.ts';

export type ProbedFormat = 'png' | 'jpeg' | 'webp' | 'gif';

export interface ProbeResult {
  format: ProbedFormat;
  width: number;
  height: number;
}

/**
 * Internal tri-state: a result, `null` (not an image we understand / corrupt), or "the header continues
 * past the end of this buffer" with the minimum total length that might settle it. The latter lets
 * probeBase64 decode a short prefix first and grow it only when the format really needs more bytes.
 */
type Outcome = ProbeResult | null | { need: number };

/** Reads format and dimensions from the header of `bytes`; null for anything unrecognised or truncated. */
export function probeImage(bytes: Buffer): ProbeResult | null {
  const outcome = probeOutcome(bytes);
  return outcome !== null && 'format' in outcome ? outcome : null;
}

/** Base64 characters decoded on the first attempt (~768 bytes): enough for every format but JPEG with big APPn segments. */
const FIRST_PREFIX_CHARS = 1024;

/**
 * Like probeImage for base64 input, decoding only a prefix of the string. PNG/GIF/WebP headers live in the
 * first 30 bytes; a JPEG's SOF marker can follow hundreds of KB of EXIF/ICC/XMP, so for JPEG the prefix grows
 * (at least doubling, or straight to the offset the segment walk says it needs) until the SOF is reached or the
 * whole string has been decoded. A multi-megabyte upload is therefore not decoded whole in the common case.
 *
 * Takes a string or a Buffer view of the text (base64.ts), and a `data:<type>;base64,` URL too, since that is how
 * OpenAI-style clients often send images.
 * Node's base64 decoder skips whitespace and accepts the URL-safe alphabet; decoding a prefix of the string
 * yields a prefix of the full decode, which is all the readers need.
 */
export function probeBase64(base64: Base64Text): ProbeResult | null {
  if (typeof base64 !== 'string' && !Buffer.isBuffer(base64)) return null;
  let start = 0;
  if (base64StartsWith(base64, 'data:')) {
    const comma = base64IndexOf(base64, ',');
    // A data URL without ";base64" is percent-encoded text, not something we probe.
    if (comma < 0 || !base64Slice(base64, 0, comma).toLowerCase().endsWith(';base64')) return null;
    start = comma + 1;
  }
  const total = base64.length - start;
  let chars = Math.min(FIRST_PREFIX_CHARS, total);
  for (;;) {
    const outcome = probeOutcome(Buffer.from(base64Slice(base64, start, start + chars), 'base64'));
    if (outcome === null || 'format' in outcome) return outcome;
    if (chars >= total) return null; // the whole string is decoded and the header is still incomplete
    // 4 base64 chars carry 3 bytes; +8 chars of slack covers a partial final quantum.
    const charsForNeed = Math.ceil(outcome.need / 3) * 4 + 8;
    chars = Math.min(total, Math.max(chars * 2, charsForNeed));
  }
}

function probeOutcome(b: Buffer): Outcome {
  if (!(b instanceof Uint8Array)) return null; // Buffer is a Uint8Array; anything else is a caller bug, not an image
  // Too short to tell the formats apart: a prefix of a valid signature may still become an image.
  if (b.length < 12) return couldBeSignaturePrefix(b) ? { need: 32 } : null;
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return probePng(b);
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return probeJpeg(b);
  if (ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WEBP') return probeWebp(b);
  if (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a') return probeGif(b);
  return null;
}

const SIGNATURES: readonly number[][] = [
  [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
  [0xff, 0xd8, 0xff],
  [0x52, 0x49, 0x46, 0x46], // RIFF (WebP's "WEBP" tag sits at offset 8)
  [0x47, 0x49, 0x46, 0x38], // GIF8
];

function couldBeSignaturePrefix(b: Uint8Array): boolean {
  if (b.length === 0) return false;
  return SIGNATURES.some((sig) => {
    for (let i = 0; i < Math.min(b.length, sig.length); i++) if (b[i] !== sig[i]) return false;
    return true;
  });
}

function ascii(b: Uint8Array, offset: number, length: number): string {
  if (offset + length > b.length) return '';
  let s = '';
  for (let i = offset; i < offset + length; i++) s += String.fromCharCode(b[i]);
  return s;
}

function u16be(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}
function u32be(b: Uint8Array, o: number): number {
  return ((b[o] << 24) >>> 0) + ((b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]);
}
function u16le(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}
function u24le(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16);
}

/** Zero-sized or absurd dimensions mean a corrupt header, not an image. */
function sized(format: ProbedFormat, width: number, height: number): ProbeResult | null {
  if (!(width > 0 && height > 0)) return null;
  return { format, width, height };
}

/** PNG: 8-byte signature, then IHDR must be the first chunk (length 13): width and height at bytes 16 and 20. */
function probePng(b: Uint8Array): Outcome {
  if (b.length < 8) return { need: 24 };
  if (u32be(b, 4) !== 0x0d0a1a0a) return null;
  if (b.length < 24) return { need: 24 };
  if (ascii(b, 12, 4) !== 'IHDR') return null;
  const width = u32be(b, 16);
  const height = u32be(b, 20);
  // The PNG spec caps dimensions at 2^31-1; larger values mean corruption.
  if (width > 0x7fffffff || height > 0x7fffffff) return null;
  return sized('png', width, height);
}

/**
 * JPEG: walk the marker segments after SOI until a Start-Of-Frame. SOF0..SOF15 are 0xC0..0xCF except
 * 0xC4 (DHT), 0xC8 (JPG, reserved) and 0xCC (DAC), which share the range but carry tables, not frame headers.
 * A frame header is: length(2) precision(1) height(2) width(2).
 */
function probeJpeg(b: Uint8Array): Outcome {
  let i = 2;
  for (;;) {
    if (i >= b.length) return { need: i + 2 };
    if (b[i] !== 0xff) return null; // segments must start with a marker
    // Any number of 0xFF fill bytes may precede the marker code.
    while (i < b.length && b[i] === 0xff) i++;
    if (i >= b.length) return { need: i + 2 };
    const marker = b[i];
    i++;
    // Stand-alone markers carry no length: TEM (0x01), RSTn (0xD0..0xD7). Seeing SOI again is corrupt.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue;
    // End of image or start of scan before any frame header: there is no SOF to find.
    if (marker === 0xd9 || marker === 0xda || marker === 0xd8 || marker === 0x00) return null;
    if (i + 2 > b.length) return { need: i + 2 };
    const length = u16be(b, i);
    if (length < 2) return null;
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (length < 7) return null;
      if (i + 7 > b.length) return { need: i + 7 };
      const height = u16be(b, i + 3);
      const width = u16be(b, i + 5);
      // height 0 means "defined later by a DNL marker": legal but rare; we do not chase it.
      return sized('jpeg', width, height);
    }
    i += length; // skip APPn/COM/DQT/DHT/... payloads without reading them
  }
}

/**
 * WebP: RIFF container whose first chunk is one of
 * - "VP8 " (lossy): 3-byte frame tag, start code 9D 01 2A, then 14-bit width and height (2 scale bits above).
 * - "VP8L" (lossless): signature byte 0x2F, then 14 bits width-1 and 14 bits height-1, little-endian bit packing.
 * - "VP8X" (extended): 4 bytes of flags/reserved, then 24-bit canvas width-1 and height-1.
 */
function probeWebp(b: Uint8Array): Outcome {
  if (b.length < 30) return { need: 30 };
  const chunk = ascii(b, 12, 4);
  if (chunk === 'VP8 ') {
    const keyFrame = (b[20] & 0x01) === 0;
    if (!keyFrame || b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return null;
    return sized('webp', u16le(b, 26) & 0x3fff, u16le(b, 28) & 0x3fff);
  }
  if (chunk === 'VP8L') {
    if (b[20] !== 0x2f) return null;
    const bits = b[21] | (b[22] << 8) | (b[23] << 16) | (b[24] << 24);
    return sized('webp', (bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
  }
  if (chunk === 'VP8X') {
    return sized('webp', u24le(b, 24) + 1, u24le(b, 27) + 1);
  }
  return null;
}

/** GIF: 6-byte signature, then the logical screen width and height (little-endian 16-bit). */
function probeGif(b: Uint8Array): Outcome {
  return sized('gif', u16le(b, 6), u16le(b, 8));
}

/**
 * Whether an image's bytes run to the end its format marks (PNG's IEND chunk, JPEG's EOI marker, the length WebP's
 * RIFF header declares, GIF's trailer), read from the base64's last characters only. A download cut short but
 * declared complete, or a body truncated upstream, probes fine (the header is intact) yet is not an image anyone
 * can use: it must not be delivered, let alone charged.
 */
export function looksComplete(base64: Base64Text, format: ProbedFormat): boolean {
  let start = 0;
  if (base64StartsWith(base64, 'data:')) start = base64IndexOf(base64, ',') + 1;
  let end = base64.length;
  while (end > start && /[\s=]/.test(base64Slice(base64, end - 1, end))) end--;
  const length = end - start;
  const decodedLength = Math.floor((length * 3) / 4);
  // The last whole 4-character groups (~36 bytes), aligned to the start of the data; an unpadded tail is padded.
  const from = start + Math.max(0, Math.floor((length - 48) / 4) * 4);
  const text = base64Slice(base64, from, end);
  const tail = Buffer.from(text + '='.repeat((4 - (text.length % 4)) % 4), 'base64');
  switch (format) {
    case 'png':
      return tail.subarray(-8).equals(PNG_IEND);
    case 'jpeg':
      // Encoders may pad after the EOI marker; it must be among the last bytes.
      return tail.subarray(-24).includes(JPEG_EOI);
    case 'gif':
      return tail.subarray(-8).includes(0x3b);
    case 'webp': {
      const head = Buffer.from(base64Slice(base64, start, start + 12), 'base64');
      return head.length >= 8 && head.readUInt32LE(4) + 8 <= decodedLength;
    }
  }
}

const PNG_IEND = Buffer.from([0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]);
const JPEG_EOI = Buffer.from([0xff, 0xd9]);
