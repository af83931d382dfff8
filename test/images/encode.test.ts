import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { mediaTypeOf, transcode } from '../../src/images/encode.ts';
import { probeImage } from '../../src/images/probe.ts';

const W = 333;
const H = 517;

/** Magic bytes checked independently of probe.ts, so a probe bug cannot hide an encoder bug. */
function magicFormat(bytes: Buffer): string {
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png';
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.subarray(0, 4).toString('latin1') === 'RIFF' && bytes.subarray(8, 12).toString('latin1') === 'WEBP') return 'webp';
  if (bytes.subarray(0, 4).toString('latin1') === 'GIF8') return 'gif';
  return 'unknown';
}

/** A half-transparent test image with a gradient, so encoders have real content to work with. */
async function source(format: 'png' | 'jpeg' | 'webp' | 'gif', alpha = false): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">
    <defs><linearGradient id="g"><stop offset="0" stop-color="#e33"/><stop offset="1" stop-color="#33e"/></linearGradient></defs>
    <rect width="${W}" height="${H}" fill="url(#g)" fill-opacity="${alpha ? 0.5 : 1}"/></svg>`;
  return sharp(Buffer.from(svg)).toFormat(format).toBuffer();
}

describe('transcode', () => {
  for (const from of ['png', 'jpeg', 'webp', 'gif'] as const) {
    for (const to of ['png', 'jpeg', 'webp'] as const) {
      it(`${from} → ${to} produces ${to} at the same size`, async () => {
        const out = await transcode(await source(from), to);
        assert.equal(magicFormat(out), to);
        assert.deepEqual(probeImage(out), { format: to, width: W, height: H });
        // sharp can decode what we wrote.
        const meta = await sharp(out).metadata();
        assert.equal(meta.format, to);
      });
    }
  }

  it('returns the input untouched when it already is the target format', async () => {
    for (const format of ['png', 'jpeg', 'webp'] as const) {
      const input = await source(format);
      assert.equal(await transcode(input, format), input);
    }
  });

  it('encodes jpeg and webp at the asked quality (OpenAI output_compression; 100 = least compressed)', async () => {
    const input = await sharp({
      create: { width: 256, height: 256, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 40 } },
    })
      .png()
      .toBuffer();
    for (const to of ['jpeg', 'webp'] as const) {
      const small = await transcode(input, to, undefined, 10);
      const large = await transcode(input, to, undefined, 100);
      assert.ok(small.length < large.length / 2, `${to}: ${small.length} vs ${large.length}`);
      assert.ok((await transcode(input, to)).length < large.length, `${to}: the default (90) is below 100`);
    }
  });

  it('flattens transparency onto white for JPEG', async () => {
    const transparent = await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
      .png()
      .toBuffer();
    const jpeg = await transcode(transparent, 'jpeg');
    const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.channels, 3);
    for (const value of data) assert.ok(value >= 250, `expected white, got ${value}`);
  });

  it('keeps alpha for PNG and WebP', async () => {
    for (const to of ['png', 'webp'] as const) {
      const from = to === 'png' ? 'webp' : 'png';
      const meta = await sharp(await transcode(await source(from, true), to)).metadata();
      assert.equal(meta.hasAlpha, true, to);
    }
  });

  it('applies EXIF orientation before stripping metadata', async () => {
    // Stored 333 wide × 517 high with "rotate 90° CW" (orientation 6): displayed 517 wide × 333 high.
    const rotated = await sharp(await source('png'))
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    assert.equal((await sharp(rotated).metadata()).orientation, 6);
    const png = await transcode(rotated, 'png');
    assert.deepEqual(probeImage(png), { format: 'png', width: H, height: W });
  });

  it('is deterministic and writes no metadata', async () => {
    const input = await source('png');
    for (const to of ['jpeg', 'webp'] as const) {
      const a = await transcode(input, to);
      const b = await transcode(input, to);
      assert.ok(a.equals(b), to);
      const meta = await sharp(a).metadata();
      assert.equal(meta.exif, undefined);
      assert.equal(meta.icc, undefined);
    }
  });

  it('rejects bytes that are not an image', async () => {
    await assert.rejects(transcode(Buffer.from('definitely not an image'), 'png'));
    await assert.rejects(transcode(Buffer.alloc(0), 'jpeg'));
  });
});

describe('mediaTypeOf', () => {
  it('maps format names to IANA media types', () => {
    assert.equal(mediaTypeOf('png'), 'image/png');
    assert.equal(mediaTypeOf('jpeg'), 'image/jpeg');
    assert.equal(mediaTypeOf('webp'), 'image/webp');
    assert.equal(mediaTypeOf('gif'), 'image/gif');
  });
});
