import { hashString } from './random.ts';
import { hsl, mix } from './colour.ts';
import type { Terrain, TimeOfDay } from './words.ts';

/**
 * Mood → colours: sky, light and land colours for each time of day and terrain, pulled towards the prompt's
 * colour words, plus the accent colours of the foreground shapes.
 */

export interface Palette {
  skyTop: string;
  skyMid: string;
  skyBottom: string;
  /** Sun or moon. */
  light: string;
  /** Terrain layers, far to near. */
  land: [string, string, string];
  /** Colours of the foreground shapes (from colour words, else hashed from the prompt's words). */
  accents: string[];
  cloud: string;
}

const SKIES: Record<TimeOfDay, { top: string; mid: string; bottom: string; light: string; cloud: string }> = {
  day: { top: '#2f7fd1', mid: '#78b6ea', bottom: '#d4ecfa', light: '#fff3b8', cloud: '#ffffff' },
  sunset: { top: '#2a1a5e', mid: '#b23a6e', bottom: '#ffab5c', light: '#ffd56e', cloud: '#ffc2a0' },
  night: { top: '#02040f', mid: '#0b1538', bottom: '#24386e', light: '#f3efd9', cloud: '#3a4770' },
  storm: { top: '#262b33', mid: '#4b535e', bottom: '#8a939c', light: '#d9dde2', cloud: '#5b636e' },
  snow: { top: '#86a7c6', mid: '#b9cde0', bottom: '#eef3f8', light: '#ffffff', cloud: '#f4f7fa' },
};

/** Daylight terrain colours, far to near; the time of day then shades them. */
const LANDS: Record<Terrain, [string, string, string]> = {
  hills: ['#7fae62', '#4f8d43', '#2f6a32'],
  water: ['#5f8f6a', '#2c6fa3', '#1b4f80'],
  mountains: ['#7d8aa0', '#56627a', '#3f6b3c'],
  city: ['#8c94a6', '#59606f', '#2f3440'],
  forest: ['#4f8a4e', '#2f6b3a', '#1c4a26'],
  desert: ['#ecc48a', '#d9a05e', '#b97a3e'],
};

/** How each time of day shades the land: mixed towards this colour by this much. */
const LAND_SHADE: Record<TimeOfDay, [string, number]> = {
  day: ['#000000', 0],
  sunset: ['#3b1d4a', 0.45],
  night: ['#050a1c', 0.72],
  storm: ['#3a3f46', 0.45],
  snow: ['#f2f5f9', 0.55],
};

export function buildPalette(
  time: TimeOfDay,
  terrain: Terrain,
  colours: string[],
  tokens: string[],
  noKeywords: boolean,
  promptHash: number,
): Palette {
  const sky = SKIES[time];
  let top = sky.top;
  let mid = sky.mid;
  let bottom = sky.bottom;
  let land = LANDS[terrain].map((c) => mix(c, LAND_SHADE[time][0], LAND_SHADE[time][1])) as [string, string, string];

  if (noKeywords && colours.length === 0) {
    // Nothing recognisable: derive the whole mood from a hue hashed from the prompt, so prompts look distinct.
    const hue = promptHash % 360;
    top = hsl(hue, 0.5, 0.3);
    mid = hsl(hue + 25, 0.55, 0.55);
    bottom = hsl(hue + 45, 0.7, 0.82);
    land = [hsl(hue + 150, 0.3, 0.55), hsl(hue + 165, 0.35, 0.4), hsl(hue + 180, 0.4, 0.26)];
  } else if (colours.length > 0) {
    // "a red sky", "blue hills": pull sky and land towards the first colour word so it dominates the picture.
    const c = colours[0];
    top = mix(top, c, 0.35);
    mid = mix(mid, c, 0.45);
    bottom = mix(bottom, c, 0.25);
    land = land.map((l) => mix(l, c, 0.2)) as [string, string, string];
  }

  // Foreground shapes: the colour words if any, else one hue per content word (so "a cat and a kite" ≠ "a dog").
  const accents = [...colours];
  for (const t of colours.length > 0 ? [] : tokens) {
    if (accents.length >= 3) break;
    if (t.length < 3 || STOPWORDS.has(t)) continue;
    accents.push(hsl(hashString(t)() % 360, 0.7, 0.55));
  }
  if (accents.length < 1) accents.push(hsl((promptHash >>> 9) % 360, 0.7, 0.55));

  return { skyTop: top, skyMid: mid, skyBottom: bottom, light: sky.light, land, accents, cloud: sky.cloud };
}

const STOPWORDS = new Set(
  'the and with for from into onto over under that this there their of in on at by an a to is are was were its it as or photo image picture style very'.split(
    ' ',
  ),
);
