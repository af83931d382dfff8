import { hashString, streamFor } from './random.ts';
import { cleanText } from './text.ts';
import { TERRAIN_WORDS, TIME_WORDS, firstMatch, uniqueColours, type Terrain, type TimeOfDay } from './words.ts';
import { buildPalette, type Palette } from './palette.ts';

/**
 * Scene planning: everything the prompt and seed decide (mood, palette, horizon, sun/moon, caption), computed
 * once, so every layer, the caption and the edit grade draw from the same plan.
 */

export interface Scene {
  /** Drawing coordinates are always the requested size; partial renders scale via viewBox. */
  w: number;
  h: number;
  /** Shorter side: the unit for sizes that should look the same at any aspect ratio. */
  unit: number;
  horizon: number;
  /** Sun or moon disc (absent in storms, but planned anyway so other layers can refer to it). */
  light: { x: number; y: number; r: number };
  time: TimeOfDay;
  terrain: Terrain;
  palette: Palette;
  words: Set<string>;
  /** Caption text, cleaned (no control/XML-invalid characters); not yet truncated or escaped. */
  caption: string;
  /** Base of all PRNG streams: hash of the full prompt and the seed. */
  baseSeed: number;
}

/** Only this much of the prompt is tokenised or captioned; the rest still counts through the hash. */
const ANALYSED_PROMPT_CHARS = 4000;

export function planScene(prompt: string, seed: number, w: number, h: number): Scene {
  // The whole prompt and the seed go into the hash, so prompts differing only after char 4000 still differ.
  const baseSeed = hashString(`${prompt}\u0000${String(seed)}`)();
  const caption = cleanText(prompt.slice(0, ANALYSED_PROMPT_CHARS));
  const tokens = (caption.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []).slice(0, 400);
  const words = new Set<string>();
  for (const t of tokens) {
    words.add(t);
    // Crude singular form so "mountains", "trees", "waves" hit the keyword tables.
    if (t.length > 3 && t.endsWith('s')) words.add(t.slice(0, -1));
  }

  const time = firstMatch(tokens, TIME_WORDS);
  const terrain = firstMatch(tokens, TERRAIN_WORDS);
  const colours = uniqueColours(tokens);
  // Stable per prompt (not per seed): prompts with no keyword still get their own look, and seeds vary only layout.
  const promptHash = hashString(tokens.join(' '))();

  const resolvedTime: TimeOfDay = time ?? 'day';
  const resolvedTerrain: Terrain = terrain ?? (['hills', 'water', 'mountains', 'desert', 'forest'] as const)[promptHash % 5];
  const palette = buildPalette(resolvedTime, resolvedTerrain, colours, tokens, time === undefined && terrain === undefined, promptHash);

  const rng = streamFor(baseSeed, 'layout');
  const horizon = h * (resolvedTerrain === 'water' ? rng.range(0.5, 0.62) : rng.range(0.55, 0.7));
  const unit = Math.min(w, h);
  let light: Scene['light'];
  if (resolvedTime === 'sunset') {
    // A big sun sitting on the horizon, half hidden by the terrain drawn later.
    const r = unit * rng.range(0.09, 0.14);
    light = { x: w * rng.range(0.25, 0.75), y: horizon - r * rng.range(0.1, 0.6), r };
  } else {
    const night = resolvedTime === 'night';
    light = {
      x: w * rng.range(0.12, 0.88),
      y: horizon * rng.range(0.18, 0.5),
      r: unit * rng.range(night ? 0.04 : 0.05, night ? 0.065 : 0.08),
    };
  }
  return {
    w,
    h,
    unit,
    horizon,
    light,
    time: resolvedTime,
    terrain: resolvedTerrain,
    palette,
    words,
    caption,
    baseSeed,
  };
}
