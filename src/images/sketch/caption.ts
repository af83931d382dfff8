import sharp from 'sharp';
import type { Scene } from './plan.ts';
import { n } from './svg.ts';
import { escapeXml, fitText, textWidth } from './text.ts';

/**
 * The text drawn on every render: the prompt as a caption band at the bottom and the dev-renderer label in the
 * corner, as SVG markup (scene renders) or rasterised into an RGB buffer (edits).
 */

/** Text shown in the top-left corner of every render. */
export const SKETCH_LABEL = 'deepshi-sketch · dev renderer';

const FONT = `font-family="DejaVu Sans, Noto Sans, Liberation Sans, Arial, Helvetica, sans-serif"`;

function captionFontSize(s: Scene): number {
  // Scales with width; capped by height so a 4096×64 banner is not all caption.
  return Math.max(6, Math.round(Math.min(s.w * 0.028, s.h * 0.06)));
}

export function captionBandHeight(s: Scene): number {
  return s.caption ? Math.round(captionFontSize(s) * 2) : 0;
}

/** A piece of text markup and the integer pixel box (scene coordinates) it draws in. */
interface TextBox {
  x: number;
  y: number;
  width: number;
  height: number;
  markup: string;
}

/** The caption band at the bottom, or undefined for an empty prompt. */
function captionBox(s: Scene): TextBox | undefined {
  if (!s.caption) return undefined;
  const fs = captionFontSize(s);
  const pad = Math.max(2, Math.round(fs * 0.6));
  const band = captionBandHeight(s);
  const text = fitText(s.caption, s.w - pad * 2, fs);
  const y = Math.max(0, s.h - band);
  return {
    x: 0,
    y,
    width: s.w,
    height: s.h - y,
    markup:
      `<rect x="0" y="${s.h - band}" width="${s.w}" height="${band}" fill="#000000" fill-opacity="0.45"/>` +
      `<text x="${pad}" y="${n(s.h - band / 2 + fs * 0.35)}" ${FONT} font-size="${fs}" fill="#ffffff">${escapeXml(text)}</text>`,
  };
}

/** The corner label, plus "preview NN%" on partial renders (progress given). */
function labelBox(s: Scene, progress: number | undefined): TextBox {
  const lfs = Math.max(5, Math.round(captionFontSize(s) * 0.5));
  const label = progress === undefined ? SKETCH_LABEL : `${SKETCH_LABEL} · preview ${Math.round(progress * 100)}%`;
  const lpad = Math.max(1, Math.round(lfs * 0.4));
  const lw = Math.max(1, Math.min(s.w - lpad, textWidth(label) * lfs + lpad * 2));
  const lh = lfs * 1.6;
  return {
    x: 0,
    y: 0,
    width: Math.min(s.w, Math.ceil(lpad + lw + 1)),
    height: Math.min(s.h, Math.ceil(lpad + lh + 1)),
    markup:
      `<rect x="${lpad}" y="${lpad}" width="${n(lw)}" height="${n(lh)}" rx="${n(lfs * 0.3)}" fill="#000000" fill-opacity="0.4"/>` +
      `<text x="${lpad * 2}" y="${n(lpad + lfs * 1.15)}" ${FONT} font-size="${lfs}" fill="#ffffff" fill-opacity="0.9">${escapeXml(label)}</text>`,
  };
}

/** Caption and label markup in scene coordinates, for SVGs that cover the whole image. */
export function textLayer(s: Scene, progress: number | undefined): string {
  return (captionBox(s)?.markup ?? '') + labelBox(s, progress).markup;
}

/**
 * Draws the caption and label onto an RGB buffer of the full scene size: each box is rasterised on its own (a
 * viewBox crops the markup to the box) and alpha-blended in place. Compositing full-size overlays with sharp
 * instead costs about a second at 4096², since libvips composites every pixel in float.
 */
export async function drawTextInto(s: Scene, rgb: Buffer, progress: number | undefined): Promise<void> {
  for (const box of [captionBox(s), labelBox(s, progress)]) {
    if (!box || box.width < 1 || box.height < 1) continue;
    const svg =
      `<svg xmlns="http://www.w3.org/2000/svg" width="${box.width}" height="${box.height}" ` +
      `viewBox="${box.x} ${box.y} ${box.width} ${box.height}">${box.markup}</svg>`;
    const { data, info } = await sharp(Buffer.from(svg)).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    for (let y = 0; y < info.height; y++) {
      for (let x = 0; x < info.width; x++) {
        const src = (y * info.width + x) * 4;
        const alpha = data[src + 3];
        if (alpha === 0) continue;
        const dst = ((box.y + y) * s.w + box.x + x) * 3;
        for (let c = 0; c < 3; c++) rgb[dst + c] = Math.round(rgb[dst + c] + ((data[src + c] - rgb[dst + c]) * alpha) / 255);
      }
    }
  }
}
