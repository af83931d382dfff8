import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp, { type Sharp } from 'sharp';
import { looksComplete, probeBase64, probeImage } from '../../src/images/probe.ts';
import { renderSketch } from '../../src/images/sketch.ts';

// Odd, non-square sizes catch swapped width/height and off-by-one (VP8L/VP8X store size-1).
const W = 333;
const H = 517;

function blank(width = W, height = H, alpha = false): Sharp {
  return sharp({ create: { width, height, channels: alpha ? 4 : 3, background: { r: 40, g: 120, b: 200, alpha: 0.5 } } });
}

/** Deterministic pseudo-random bytes (an LCG), so failures reproduce. */
function noise(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/**
 * A JPEG with `count` APP segments of `size` bytes each inserted right after SOI, so the frame header sits
 * far from the start, as in camera files with EXIF thumbnails and ICC profiles.
 */
function withBigAppSegments(jpeg: Buffer, count: number, size: number): Buffer {
  assert.ok(size <= 65533, 'a JPEG segment holds at most 65533 payload bytes');
  const segments: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const header = Buffer.from([0xff, 0xe2, ((size + 2) >> 8) & 0xff, (size + 2) & 0xff]);
    // Payload full of 0xFF/0xD8/0xC0 bytes: a reader that scans for markers instead of skipping segments trips here.
    const payload = Buffer.alloc(size, Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x01, 0x00, 0x01, 0xd8]));
    segments.push(header, payload);
  }
  return Buffer.concat([jpeg.subarray(0, 2), ...segments, jpeg.subarray(2)]);
}

describe('probeImage', () => {
  it('reads PNG dimensions from IHDR', async () => {
    const png = await blank().png().toBuffer();
    assert.deepEqual(probeImage(png), { format: 'png', width: W, height: H });
  });

  it('reads baseline and progressive JPEG dimensions (SOF0 and SOF2)', async () => {
    const baseline = await blank().jpeg().toBuffer();
    const progressive = await blank().jpeg({ progressive: true }).toBuffer();
    assert.ok(progressive.includes(Buffer.from([0xff, 0xc2])), 'expected a SOF2 marker');
    assert.deepEqual(probeImage(baseline), { format: 'jpeg', width: W, height: H });
    assert.deepEqual(probeImage(progressive), { format: 'jpeg', width: W, height: H });
  });

  it('reads JPEG dimensions behind large APP segments and an ICC profile', async () => {
    const jpeg = await blank().jpeg().withIccProfile('p3').toBuffer();
    assert.deepEqual(probeImage(jpeg), { format: 'jpeg', width: W, height: H });
    assert.deepEqual(probeImage(withBigAppSegments(jpeg, 3, 60_000)), { format: 'jpeg', width: W, height: H });
  });

  it('reads all three WebP flavours: VP8 (lossy), VP8L (lossless), VP8X (extended, here for alpha)', async () => {
    const cases: [string, Buffer][] = [
      ['VP8 ', await blank().webp({ quality: 80 }).toBuffer()],
      ['VP8L', await blank().webp({ lossless: true }).toBuffer()],
      ['VP8X', await blank(W, H, true).webp({ quality: 80 }).toBuffer()],
    ];
    for (const [chunk, webp] of cases) {
      assert.equal(webp.subarray(12, 16).toString('latin1'), chunk, 'fixture has the intended first chunk');
      assert.deepEqual(probeImage(webp), { format: 'webp', width: W, height: H }, chunk);
    }
  });

  it('reads GIF logical screen size', async () => {
    const gif = await blank().gif().toBuffer();
    assert.deepEqual(probeImage(gif), { format: 'gif', width: W, height: H });
  });

  it('handles 1×1 and 4096-wide images (14-bit WebP fields, 16-bit JPEG fields)', async () => {
    for (const [w, h] of [
      [1, 1],
      [4096, 3],
      [3, 4096],
    ]) {
      for (const format of ['png', 'jpeg', 'webp'] as const) {
        const bytes = await blank(w, h).toFormat(format).toBuffer();
        assert.deepEqual(probeImage(bytes), { format, width: w, height: h }, `${format} ${w}x${h}`);
      }
    }
  });

  it('returns null for empty, garbage and non-image input', () => {
    assert.equal(probeImage(Buffer.alloc(0)), null);
    assert.equal(probeImage(Buffer.from('hello, world! this is not an image')), null);
    assert.equal(probeImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')), null);
    assert.equal(probeImage(Buffer.from('RIFF\x10\x00\x00\x00WAVEfmt ', 'latin1')), null);
    for (let seed = 1; seed <= 200; seed++) assert.equal(probeImage(noise(64 + seed, seed)), null, `seed ${seed}`);
    // Wrong types from untyped callers must not throw either.
    assert.equal(probeImage(undefined as unknown as Buffer), null);
    assert.equal(probeImage('not a buffer' as unknown as Buffer), null);
  });

  it('returns null for corrupt headers with a valid signature', async () => {
    const png = await blank().png().toBuffer();
    const zeroWidth = Buffer.from(png);
    zeroWidth.writeUInt32BE(0, 16);
    assert.equal(probeImage(zeroWidth), null, 'zero width');
    const notIhdr = Buffer.from(png);
    notIhdr.write('IDAT', 12, 'latin1');
    assert.equal(probeImage(notIhdr), null, 'first chunk not IHDR');

    // SOI followed directly by start-of-scan: no frame header to find.
    assert.equal(probeImage(Buffer.from([0xff, 0xd8, 0xff, 0xda, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 0, 0])), null);
    // A segment length below 2 would make the walker loop forever or step backwards.
    assert.equal(probeImage(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0])), null);
    // Bytes where a marker must be.
    assert.equal(probeImage(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 1, 2, 0x12, 0x34, 0, 0, 0, 0])), null);

    const webp = await blank().webp().toBuffer();
    const unknownChunk = Buffer.from(webp);
    unknownChunk.write('ABCD', 12, 'latin1');
    assert.equal(probeImage(unknownChunk), null, 'unknown WebP chunk');
  });

  it('never throws on any truncation of real files, and never reports a wrong size', async () => {
    const files = [
      await blank().png().toBuffer(),
      withBigAppSegments(await blank().jpeg().toBuffer(), 1, 3000),
      await blank().webp().toBuffer(),
      await blank().webp({ lossless: true }).toBuffer(),
      await blank(W, H, true).webp().toBuffer(),
      await blank().gif().toBuffer(),
    ];
    for (const file of files) {
      const full = probeImage(file);
      assert.ok(full);
      for (let end = 0; end <= Math.min(file.length, 3200); end++) {
        const got = probeImage(file.subarray(0, end));
        if (got !== null) assert.deepEqual(got, full, `prefix of ${end} bytes`);
      }
    }
  });

  it('never throws when header bytes are corrupted', async () => {
    const files = [await blank().png().toBuffer(), await blank().jpeg().toBuffer(), await blank().webp().toBuffer()];
    for (const file of files) {
      for (let i = 0; i < Math.min(file.length, 64); i++) {
        for (const value of [0x00, 0x01, 0x7f, 0xff]) {
          const copy = Buffer.from(file);
          copy[i] = value;
          const got = probeImage(copy);
          if (got !== null) {
            assert.ok(Number.isInteger(got.width) && got.width > 0);
            assert.ok(Number.isInteger(got.height) && got.height > 0);
          }
        }
      }
    }
  });
});

describe('probeBase64', () => {
  it('probes base64 and data URLs of every format', async () => {
    for (const format of ['png', 'jpeg', 'webp', 'gif'] as const) {
      const b64 = (await blank().toFormat(format).toBuffer()).toString('base64');
      assert.deepEqual(probeBase64(b64), { format, width: W, height: H }, format);
      assert.deepEqual(probeBase64(`data:image/${format};base64,${b64}`), { format, width: W, height: H }, `${format} data URL`);
      // Views of an upstream body holding the text (images/base64.ts) probe the same.
      assert.deepEqual(probeBase64(Buffer.from(b64, 'latin1')), { format, width: W, height: H }, `${format} as bytes`);
      assert.deepEqual(
        probeBase64(Buffer.from(`data:image/${format};base64,${b64}`, 'latin1')),
        { format, width: W, height: H },
        `${format} data URL as bytes`,
      );
    }
  });

  it('finds a JPEG frame header behind ~180 KB of APP segments by growing the decoded prefix', async () => {
    const jpeg = withBigAppSegments(await blank().jpeg().withIccProfile('p3').toBuffer(), 3, 60_000);
    assert.deepEqual(probeBase64(jpeg.toString('base64')), { format: 'jpeg', width: W, height: H });
    assert.deepEqual(probeBase64(Buffer.from(jpeg.toString('base64'), 'latin1')), { format: 'jpeg', width: W, height: H });
    // MIME-style line breaks shift the char/byte ratio; the prefix logic must still get there.
    const wrapped = jpeg.toString('base64').replace(/.{76}/g, '$&\r\n');
    assert.deepEqual(probeBase64(wrapped), { format: 'jpeg', width: W, height: H });
  });

  it('decodes only a prefix of a large image', async (t) => {
    // A big PNG: the header is in the first bytes, so nothing near the whole string should be decoded.
    const png = await sharp({
      create: { width: 1500, height: 1500, channels: 3, background: '#000000', noise: { type: 'gaussian', mean: 128, sigma: 60 } },
    })
      .png({ compressionLevel: 0 })
      .toBuffer();
    const b64 = png.toString('base64');
    assert.ok(b64.length > 5_000_000);
    const from = t.mock.method(Buffer, 'from');
    const got = probeBase64(b64);
    const decodedChars = from.mock.calls.map((call) => (typeof call.arguments[0] === 'string' ? call.arguments[0].length : 0));
    from.mock.restore();
    assert.deepEqual(got, { format: 'png', width: 1500, height: 1500 });
    assert.ok(decodedChars.length > 0, 'the spy saw the decode');
    assert.ok(Math.max(...decodedChars) <= 4096, `decoded ${Math.max(...decodedChars)} chars`);
  });

  it('returns null for garbage, empty, truncated and malformed input', async () => {
    assert.equal(probeBase64(''), null);
    assert.equal(probeBase64('!!!!not base64 at all!!!!'), null);
    assert.equal(probeBase64(noise(5000, 7).toString('base64')), null);
    assert.equal(probeBase64('data:image/png,notbase64'), null);
    assert.equal(probeBase64('data:image/png;base64'), null);
    assert.equal(probeBase64(undefined as unknown as string), null);
    // JPEG cut inside the APP segments: the frame header never arrives.
    const jpeg = withBigAppSegments(await blank().jpeg().toBuffer(), 2, 30_000);
    assert.equal(probeBase64(jpeg.subarray(0, 40_000).toString('base64')), null);
    // A PNG signature alone.
    assert.equal(probeBase64(Buffer.from([0x89, 0x50, 0x4e, 0x47]).toString('base64')), null);
  });
});

describe('looksComplete', () => {
  it('is true for whole PNG, JPEG and WebP files (plain, padded, unpadded, data URL) and false for each cut short', async () => {
    for (const format of ['png', 'jpeg', 'webp'] as const) {
      const bytes = await renderSketch({ prompt: 'complete', seed: 3, width: 96, height: 64, format });
      const base64 = bytes.toString('base64');
      assert.equal(looksComplete(base64, format), true, format);
      assert.equal(looksComplete(base64.replace(/=+$/, ''), format), true, `${format} unpadded`);
      assert.equal(looksComplete(`data:image/${format};base64,${base64}`, format), true, `${format} data URL`);
      assert.equal(looksComplete(Buffer.from(base64), format), true, `${format} as a buffer`);
      for (const keep of [0.5, 0.9, (bytes.length - 3) / bytes.length]) {
        const cut = bytes.subarray(0, Math.floor(bytes.length * keep)).toString('base64');
        assert.equal(looksComplete(cut, format), false, `${format} cut to ${keep}`);
      }
    }
  });
});
