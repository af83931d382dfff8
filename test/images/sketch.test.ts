import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { renderSketch, type SketchOptions } from '../../src/images/sketch.ts';
import { probeImage } from '../../src/images/probe.ts';

// Small renders keep the suite fast; sizes that matter (odd, huge, tiny) have their own tests.
const base: SketchOptions = {
  prompt: 'a lighthouse on a cliff over the ocean at sunset',
  seed: 42,
  width: 320,
  height: 240,
  format: 'png',
};

function sha(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Decodes to RGB at a fixed small size so images of any format/size can be compared pixel by pixel. */
async function pixels(bytes: Buffer): Promise<Buffer> {
  return sharp(bytes).resize(64, 48, { fit: 'fill' }).removeAlpha().raw().toBuffer();
}

/** Mean absolute per-channel difference, 0..255: "visibly different" means well above encoder noise (~1). */
async function meanDiff(a: Buffer, b: Buffer): Promise<number> {
  const [pa, pb] = await Promise.all([pixels(a), pixels(b)]);
  let sum = 0;
  for (let i = 0; i < pa.length; i++) sum += Math.abs(pa[i] - pb[i]);
  return sum / pa.length;
}

async function meanRgb(bytes: Buffer): Promise<[number, number, number]> {
  const stats = await sharp(bytes).stats();
  return [stats.channels[0].mean, stats.channels[1].mean, stats.channels[2].mean];
}

describe('renderSketch', () => {
  it('is byte-identical for equal inputs, in every format', async () => {
    for (const format of ['png', 'jpeg', 'webp'] as const) {
      const a = await renderSketch({ ...base, format });
      const b = await renderSketch({ ...base, format });
      assert.ok(a.equals(b), format);
    }
  });

  it('is byte-identical across processes (no hidden state, clocks or Math.random)', async () => {
    const here = await renderSketch(base);
    const moduleUrl = new URL('../../src/images/sketch.ts', import.meta.url).href;
    const script =
      `const { renderSketch } = await import(${JSON.stringify(moduleUrl)});` +
      `const { createHash } = await import('node:crypto');` +
      `const out = await renderSketch(${JSON.stringify(base)});` +
      `process.stdout.write(createHash('sha256').update(out).digest('hex'));`;
    const child = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      encoding: 'utf8',
    });
    assert.equal(child.trim(), sha(here));
  });

  it('gives visibly different images for different seeds', async () => {
    const images = await Promise.all([1, 2, 3, 4].map((seed) => renderSketch({ ...base, seed })));
    assert.equal(new Set(images.map(sha)).size, images.length);
    for (let i = 1; i < images.length; i++) {
      const diff = await meanDiff(images[0], images[i]);
      assert.ok(diff > 3, `seed 1 vs ${i + 1}: mean pixel difference ${diff.toFixed(2)}`);
    }
  });

  it('accepts any numeric seed, including ones beyond 32 bits', async () => {
    const a = await renderSketch({ ...base, seed: 2 ** 40 });
    const b = await renderSketch({ ...base, seed: 2 ** 40 + 1 });
    const c = await renderSketch({ ...base, seed: -7 });
    assert.equal(new Set([sha(a), sha(b), sha(c)]).size, 3);
  });

  it('renders the requested size and format', async () => {
    const sizes: [number, number][] = [
      [333, 517],
      [517, 333],
      [1, 1],
      [7, 3],
      [64, 1024],
    ];
    for (const [width, height] of sizes) {
      for (const format of ['png', 'jpeg', 'webp'] as const) {
        const out = await renderSketch({ ...base, width, height, format });
        assert.deepEqual(probeImage(out), { format, width, height }, `${format} ${width}x${height}`);
        const meta = await sharp(out).metadata();
        assert.equal(meta.format, format);
        assert.equal(meta.exif, undefined, 'no metadata that could carry timestamps');
      }
    }
  });

  it('renders the largest size, 4096×4096', async () => {
    const out = await renderSketch({ ...base, width: 4096, height: 4096, format: 'jpeg' });
    assert.deepEqual(probeImage(out), { format: 'jpeg', width: 4096, height: 4096 });
  });

  it('takes its palette from colour words', async () => {
    // Same scene words, only the colour changes: the red picture must be redder than the blue one.
    for (const seed of [1, 2, 3]) {
      const [rr, , rb] = await meanRgb(await renderSketch({ ...base, prompt: 'red hills', seed }));
      const [br, , bb] = await meanRgb(await renderSketch({ ...base, prompt: 'blue hills', seed }));
      assert.ok(rr - rb > br - bb + 20, `seed ${seed}: red (${rr.toFixed(0)},${rb.toFixed(0)}) blue (${br.toFixed(0)},${bb.toFixed(0)})`);
    }
  });

  it('makes night scenes darker than day scenes', async () => {
    const [nr, ng, nb] = await meanRgb(await renderSketch({ ...base, prompt: 'mountains at night' }));
    const [dr, dg, db] = await meanRgb(await renderSketch({ ...base, prompt: 'mountains on a sunny day' }));
    assert.ok(nr + ng + nb < (dr + dg + db) * 0.6);
  });

  it('renders partials deterministically, coarser than and different from the final', async () => {
    const final = await renderSketch(base);
    assert.ok(final.equals(await renderSketch({ ...base, progress: 1 })), 'progress 1 is the final render');
    const partials: Buffer[] = [];
    for (const progress of [0, 0.25, 0.5, 0.75, 0.99]) {
      const a = await renderSketch({ ...base, progress });
      const b = await renderSketch({ ...base, progress });
      assert.ok(a.equals(b), `partial ${progress} deterministic`);
      assert.ok(!a.equals(final), `partial ${progress} differs from final`);
      assert.deepEqual(probeImage(a), { format: 'png', width: base.width, height: base.height });
      partials.push(a);
    }
    assert.equal(new Set(partials.map(sha)).size, partials.length, 'each progress step is its own image');
    // Early previews are further from the final picture than late ones.
    assert.ok((await meanDiff(partials[0], final)) > (await meanDiff(partials[3], final)));
  });

  it('treats out-of-range progress sanely', async () => {
    const final = await renderSketch(base);
    assert.ok((await renderSketch({ ...base, progress: 7 })).equals(final));
    assert.ok((await renderSketch({ ...base, progress: Number.NaN })).equals(final));
    assert.ok((await renderSketch({ ...base, progress: -1 })).equals(await renderSketch({ ...base, progress: 0 })));
  });

  describe('edits', () => {
    async function reference(): Promise<Buffer> {
      // A photo-like reference of a different size and aspect ratio than the output.
      return renderSketch({ prompt: 'a city skyline at night', seed: 9, width: 500, height: 700, format: 'jpeg' });
    }

    it('are deterministic and have the requested size', async () => {
      const ref = await reference();
      for (const format of ['png', 'jpeg', 'webp'] as const) {
        const options: SketchOptions = { ...base, prompt: 'make it a golden sunset', format, reference: { bytes: ref } };
        const a = await renderSketch(options);
        const b = await renderSketch(options);
        assert.ok(a.equals(b), format);
        assert.deepEqual(probeImage(a), { format, width: base.width, height: base.height });
      }
    });

    it('transform the reference rather than draw a new scene, and depend on prompt and seed', async () => {
      const ref = await reference();
      const edit = (prompt: string, seed: number): Promise<Buffer> => renderSketch({ ...base, prompt, seed, reference: { bytes: ref } });
      const a = await edit('make it red', 1);
      const refAtSize = await sharp(ref).resize(base.width, base.height, { fit: 'cover' }).png().toBuffer();
      const scene = await renderSketch({ ...base, prompt: 'make it red', seed: 1 });
      assert.ok((await meanDiff(a, refAtSize)) < (await meanDiff(a, scene)), 'closer to the reference than to a fresh scene');
      assert.ok((await meanDiff(a, refAtSize)) > 3, 'but visibly changed');
      assert.ok((await meanDiff(a, await edit('make it red', 2))) > 1, 'seed matters');
      assert.ok((await meanDiff(a, await edit('make it green', 1))) > 1, 'prompt matters');
    });

    it('render partial edits deterministically and differently from the final edit', async () => {
      const options: SketchOptions = { ...base, reference: { bytes: await reference() } };
      const final = await renderSketch(options);
      const a = await renderSketch({ ...options, progress: 0.3 });
      assert.ok(a.equals(await renderSketch({ ...options, progress: 0.3 })));
      assert.ok(!a.equals(final));
      assert.deepEqual(probeImage(a), { format: 'png', width: base.width, height: base.height });
    });

    it('accept greyscale, transparent, oriented and tiny references', async () => {
      const refs = [
        await sharp({ create: { width: 50, height: 80, channels: 3, background: '#808080' } })
          .greyscale()
          .png()
          .toBuffer(),
        await sharp({ create: { width: 90, height: 40, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0.3 } } })
          .png()
          .toBuffer(),
        await sharp(await reference())
          .withMetadata({ orientation: 6 })
          .jpeg()
          .toBuffer(),
        await sharp({ create: { width: 1, height: 1, channels: 3, background: '#123456' } })
          .webp()
          .toBuffer(),
      ];
      for (const ref of refs) {
        const out = await renderSketch({ ...base, width: 333, height: 517, reference: { bytes: ref } });
        assert.deepEqual(probeImage(out), { format: 'png', width: 333, height: 517 });
      }
    });

    it('reject a reference that is not an image', async () => {
      await assert.rejects(renderSketch({ ...base, reference: { bytes: Buffer.from('not an image') } }));
    });
  });

  it('survives hostile prompts', async () => {
    const prompts = [
      '',
      ' \n\t ',
      'x'.repeat(32_768),
      'word '.repeat(7000),
      '<svg onload="alert(1)"></svg> ]]> <![CDATA[ & &amp; &#0; \' " </text></svg><!--',
      '🦊🔥 👨‍👩‍👧‍👦 🇫🇷 🏳️‍🌈 emoji',
      'ctrl \u0000\u0001\u0007\u001b[31m\u007f\u0085\u200b\u202eevil\u202c\ufeff\ufffe\uffff',
      'lone \ud800 surrogates \udc00 here',
      `Z${'\u0301'.repeat(20_000)}`,
      'שלום עולם مرحبا 你好世界 こんにちは',
      '€'.repeat(40_000),
      '\u{10FFFF}\u{E0001}\u{1F600}'.repeat(3000),
    ];
    for (const prompt of prompts) {
      for (const progress of [0.5, 1]) {
        const out = await renderSketch({ ...base, prompt, progress });
        assert.deepEqual(probeImage(out), { format: 'png', width: base.width, height: base.height }, JSON.stringify(prompt.slice(0, 40)));
      }
    }
    const ref = await renderSketch(base);
    await renderSketch({ ...base, prompt: prompts[4], reference: { bytes: ref } });
  });

  it('hashes the whole prompt, even beyond the part it reads', async () => {
    const long = 'a forest '.repeat(4000);
    const a = await renderSketch({ ...base, prompt: `${long}one` });
    const b = await renderSketch({ ...base, prompt: `${long}two` });
    assert.ok(!a.equals(b));
  });

  it('rejects invalid sizes and formats with RangeError', async () => {
    for (const [width, height] of [
      [0, 10],
      [10, 0],
      [4097, 10],
      [10, 4097],
      [1.5, 10],
      [Number.NaN, 10],
      [-1, 10],
    ]) {
      await assert.rejects(renderSketch({ ...base, width, height }), RangeError, `${width}x${height}`);
    }
    await assert.rejects(renderSketch({ ...base, format: 'gif' as 'png' }), RangeError);
  });
});
