import sharp, { type Sharp } from 'sharp';
import { applyEncoder, type OutputFormat } from '../encode.ts';
import { planScene } from './plan.ts';
import { sceneSvg } from './scene.ts';
import { textLayer } from './caption.ts';
import { normalizeProgress, previewSize, upscaleSvg } from './partial.ts';
import { renderEdit } from './edit.ts';

/**
 * "deepshi-sketch": the offline development model. A procedural renderer that turns a prompt into a simple
 * landscape (sky, sun or moon, terrain, a few shapes, the prompt as a caption) in-process, with no network and
 * no weights, so the whole gateway can be run, tested and demoed without an upstream account.
 *
 * Design constraints, and how they are met:
 * - Deterministic: every random choice comes from a PRNG seeded by hash(prompt, seed, layer name); the picture is
 *   an SVG string rendered by sharp/librsvg and encoded without metadata, so equal inputs give equal bytes.
 *   Each layer has its own PRNG stream, so leaving a layer out (partial renders) does not shift the others.
 * - Fast: only flat fills, gradients and simple paths. No SVG filters (librsvg's blur is very slow at 4096²);
 *   partial renders get their softness from rendering small and upscaling instead.
 * - Recognisable: palette and composition come from the prompt's words (time of day, terrain, colour words),
 *   positions and counts from the seed, and the prompt itself is printed at the bottom, with a corner label
 *   saying this is the dev renderer so nobody mistakes its output for a real model's.
 * - Robust: the prompt is only ever hashed, tokenised and XML-escaped; hostile input (32k chars, markup,
 *   control characters, lone surrogates, emoji) cannot break the SVG or make it large.
 *
 * This file is the public entry point: validate, plan, pick the path (edit, final, partial), encode. The rest:
 * plan.ts (prompt + seed → Scene) using words.ts and palette.ts; scene.ts and terrain.ts (SVG layers);
 * caption.ts and text.ts (caption, label, text safety); partial.ts (previews); edit.ts (reference images);
 * random.ts, colour.ts, svg.ts (shared helpers).
 */

export { SKETCH_LABEL } from './caption.ts';
export { cleanText } from './text.ts';

export interface SketchOptions {
  prompt: string;
  seed: number;
  /** 1..MAX_SKETCH_SIDE. */
  width: number;
  /** 1..MAX_SKETCH_SIDE. */
  height: number;
  format: OutputFormat;
  /** 0..1 for partial (streaming preview) renders; 1 or absent = the final image. */
  progress?: number;
  /** For edits: the image to transform (any format sharp decodes). */
  reference?: { bytes: Buffer };
  /** No sky: the scene is drawn on a transparent background (png and webp; jpeg has no alpha and stays opaque). Not for edits. */
  transparent?: boolean;
  /** jpeg/webp encoder quality, 1-100 (OpenAI's output_compression); 90 by default. */
  quality?: number;
}

export const MAX_SKETCH_SIDE = 4096;

/** Renders one image; see the module comment. Throws RangeError on invalid size/format, sharp's error on an undecodable reference. */
export async function renderSketch(options: SketchOptions): Promise<Buffer> {
  const { width, height, format } = options;
  for (const [name, side] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(side) || side < 1 || side > MAX_SKETCH_SIDE) {
      throw new RangeError(`deepshi-sketch: ${name} must be an integer in 1..${MAX_SKETCH_SIDE}, got ${String(side)}`);
    }
  }
  if (format !== 'png' && format !== 'jpeg' && format !== 'webp') {
    throw new RangeError(`deepshi-sketch: unsupported format ${String(format)}`);
  }
  const progress = normalizeProgress(options.progress);
  const prompt = typeof options.prompt === 'string' ? options.prompt : '';
  const scene = planScene(prompt, options.seed, width, height);

  const output = { format, quality: options.quality, transparent: Boolean(options.transparent) && !options.reference && format !== 'jpeg' };
  if (options.reference) return encode(await renderEdit(scene, options.reference.bytes, progress), output);
  const layers = { sky: !output.transparent };

  if (progress >= 1) {
    // Final render: scene and text in one SVG, one librsvg pass, one encode.
    const svg = sceneSvg(scene, 1, width, height, layers);
    return encode(sharp(Buffer.from(svg.replace('</svg>', `${textLayer(scene, undefined)}</svg>`))), output);
  }

  // Partial render: fewer layers, drawn at a fraction of the size and upscaled (upscaling is what makes it look
  // soft, like a diffusion preview), then the caption and label drawn sharp at full size on top.
  const { w: smallW, h: smallH } = previewSize(width, height, progress);
  const preview = sharp(Buffer.from(sceneSvg(scene, progress, smallW, smallH, layers)));
  const small = await (output.transparent ? preview : preview.removeAlpha()).png({ compressionLevel: 1 }).toBuffer();
  return encode(sharp(Buffer.from(upscaleSvg(scene, small, progress))), output);
}

/** Opaque output drops the alpha channel librsvg/composite leave behind (smaller, faster PNGs); transparent keeps it. */
function encode(pipeline: Sharp, output: { format: OutputFormat; quality: number | undefined; transparent: boolean }): Promise<Buffer> {
  return applyEncoder(output.transparent ? pipeline.ensureAlpha() : pipeline.removeAlpha(), output.format, output.quality).toBuffer();
}
