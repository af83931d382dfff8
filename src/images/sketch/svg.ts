/**
 * Number formatting for SVG attributes, shared by every piece of markup: one fixed rule keeps the SVG text (and
 * so the rendered bytes) deterministic and compact.
 */

/** Compact, deterministic number formatting for SVG attributes (one decimal is plenty at pixel scale). */
export function n(value: number, digits = 1): string {
  const f = 10 ** digits;
  const r = Math.round(value * f) / f;
  return Object.is(r, -0) ? '0' : String(r);
}
