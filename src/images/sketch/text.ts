/**
 * Safe handling of untrusted prompt text, with no knowledge of the scene: cleaning what must never reach the
 * SVG, XML-escaping, and width estimates for fitting a string into a pixel budget.
 */

/**
 * Strips what must never reach the SVG or the caption: XML-invalid code points (C0 controls, lone surrogates,
 * U+FFFE/FFFF), C1 controls and bidi overrides (which would visually reorder the caption), then collapses whitespace.
 */
export function cleanText(text: string): string {
  return text
    .replace(/[^\t\n\r\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu, '')
    .replace(/[\u202a-\u202e\u2066-\u2069]/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] ?? c);
}

const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * Truncates `text` to fit `maxWidth` px at `fontSize`, ending with "…" when cut. Widths are estimated per
 * grapheme (no font metrics at hand); the estimate errs wide, so the caption may end a little early but not
 * run off the image. Works on graphemes so an emoji or accented letter is never split; absurdly long grapheme
 * clusters (thousands of combining marks) are clipped so they cannot bloat the SVG.
 */
export function fitText(text: string, maxWidth: number, fontSize: number): string {
  const budget = maxWidth / fontSize;
  if (text.length <= 2048 && textWidth(text) <= budget) return text;
  const ellipsisWidth = 1;
  let used = 0;
  let out = '';
  for (const { segment } of segmenter.segment(text.slice(0, 2048))) {
    const g = segment.length > 32 ? Array.from(segment).slice(0, 8).join('') : segment;
    const w = graphemeWidth(g);
    if (used + w > budget - ellipsisWidth) break;
    used += w;
    out += g;
  }
  return `${out.trimEnd()}…`;
}

export function textWidth(text: string): number {
  let w = 0;
  for (const { segment } of segmenter.segment(text.slice(0, 2048))) w += graphemeWidth(segment);
  return w;
}

/** Approximate advance width in em for DejaVu Sans-like fonts. */
function graphemeWidth(g: string): number {
  const cp = g.codePointAt(0) ?? 0x20;
  if (cp === 0x20) return 0.32;
  if (cp < 0x80) {
    if (/[A-Z0-9MW@%&]/.test(g)) return 0.72;
    if (/[a-z]/.test(g)) return 0.58;
    return 0.42;
  }
  // East Asian wide characters and emoji take a full em (or render as a box of similar width).
  if (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    cp >= 0x1f000 ||
    (cp >= 0x2600 && cp <= 0x27bf)
  ) {
    return 1.05;
  }
  return 0.7;
}
