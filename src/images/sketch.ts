import sharp, { type Sharp } from 'sharp';
import { applyEncoder, type OutputFormat } from './encode.ts';

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
 */

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
}

export const MAX_SKETCH_SIDE = 4096;

/** Text shown in the top-left corner of every render. */
export const SKETCH_LABEL = 'deepshi-sketch · dev renderer';

/** Renders one image; see the module comment. Throws RangeError on invalid size/format, sharp's error on an undecodable reference. */
export async function renderSketch(options: SketchOptions): Promise<Buffer> {
  const { width, height, format } = options;
  for (const [name, side] of [['width', width], ['height', height]] as const) {
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

  if (options.reference) return renderEdit(scene, options.reference.bytes, progress, format);

  if (progress >= 1) {
    // Final render: scene and text in one SVG, one librsvg pass, one encode.
    const svg = sceneSvg(scene, 1, width, height);
    return encode(sharp(Buffer.from(svg.replace('</svg>', textLayer(scene, undefined) + '</svg>'))), format);
  }

  // Partial render: fewer layers, drawn at a fraction of the size and upscaled (upscaling is what makes it look
  // soft, like a diffusion preview), then the caption and label drawn sharp at full size on top.
  const { w: smallW, h: smallH } = previewSize(width, height, progress);
  const small = await sharp(Buffer.from(sceneSvg(scene, progress, smallW, smallH))).removeAlpha().png({ compressionLevel: 1 }).toBuffer();
  return encode(sharp(Buffer.from(upscaleSvg(scene, small, progress))), format);
}

/**
 * A full-size SVG showing `smallPng` stretched to the scene size, with the text on top. Letting librsvg do the
 * upscale and the text in one pass is several times faster than sharp's resize + composite (which work in float
 * over the whole image): ~0.35 s instead of ~1.8 s at 4096² on two cores.
 */
function upscaleSvg(s: Scene, smallPng: Buffer, progress: number): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${s.w}" height="${s.h}">` +
    `<image width="${s.w}" height="${s.h}" preserveAspectRatio="none" href="data:image/png;base64,${smallPng.toString('base64')}"/>` +
    textLayer(s, progress) +
    '</svg>'
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Scene planning: everything the prompt decides, computed once.
// ---------------------------------------------------------------------------------------------------------------

type TimeOfDay = 'day' | 'sunset' | 'night' | 'storm' | 'snow';
type Terrain = 'hills' | 'water' | 'mountains' | 'city' | 'forest' | 'desert';

interface Palette {
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

interface Scene {
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

function planScene(prompt: string, seed: number, w: number, h: number): Scene {
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
    light = { x: w * rng.range(0.12, 0.88), y: horizon * rng.range(0.18, 0.5), r: unit * rng.range(night ? 0.04 : 0.05, night ? 0.065 : 0.08) };
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

const TIME_WORDS: Record<string, TimeOfDay> = wordTable({
  night: 'night nights midnight moon moonlit moonlight star stars starry galaxy space cosmic nebula nocturnal',
  sunset: 'sunset sunrise dusk dawn twilight golden evening sundown',
  storm: 'storm stormy rain rainy thunder thunderstorm lightning fog foggy mist misty cloudy overcast gloomy',
  snow: 'snow snowy winter ice icy frozen arctic glacier frost frosty',
  day: 'day daytime sunny noon morning summer bright',
});

const TERRAIN_WORDS: Record<string, Terrain> = wordTable({
  water: 'ocean sea seas beach coast wave waves lake river water shore harbor harbour island boat ship sail surf',
  mountains: 'mountain mountains peak peaks alps alpine cliff cliffs canyon volcano summit',
  city: 'city skyline town street building buildings skyscraper skyscrapers downtown urban cyberpunk metropolis',
  forest: 'forest tree trees woods woodland jungle pine pines garden park',
  desert: 'desert dune dunes sand sahara cactus pyramid pyramids oasis',
  hills: 'hill hills meadow field fields valley countryside farm grass prairie',
});

const COLOUR_WORDS: Record<string, string> = {
  red: '#d63a3a', crimson: '#b3173b', scarlet: '#e03a1e', orange: '#ee8a2a', amber: '#f0a81c',
  yellow: '#f2d13a', gold: '#e0b12e', golden: '#e0b12e', lime: '#9ccc3b', green: '#3f9e4d',
  emerald: '#1f9e6e', teal: '#1f8f8a', cyan: '#2ab7c9', turquoise: '#35c0b0', blue: '#2f6fd6',
  azure: '#3b8fe0', navy: '#1d2f6b', indigo: '#3f3a9e', violet: '#7a4bd1', purple: '#8a3fb0',
  magenta: '#c93aa8', pink: '#ef7fb0', rose: '#e0607e', brown: '#8a5a36', black: '#1d1d22',
  white: '#f4f4f0', grey: '#8b9098', gray: '#8b9098', silver: '#b8bec7',
};

function wordTable<T extends string>(groups: Record<T, string>): Record<string, T> {
  const table: Record<string, T> = Object.create(null) as Record<string, T>;
  for (const key of Object.keys(groups) as T[]) for (const word of groups[key].split(' ')) table[word] = key;
  return table;
}

/** The first keyword in prompt order wins: "a city at night" is a night city; "night" alone does not pick a terrain. */
function firstMatch<T>(tokens: string[], table: Record<string, T>): T | undefined {
  for (const t of tokens) {
    const hit = Object.prototype.hasOwnProperty.call(table, t) ? table[t] : undefined;
    if (hit !== undefined) return hit;
  }
  return undefined;
}

function uniqueColours(tokens: string[]): string[] {
  const out: string[] = [];
  for (const t of tokens) {
    const c = Object.prototype.hasOwnProperty.call(COLOUR_WORDS, t) ? COLOUR_WORDS[t] : undefined;
    if (c !== undefined && !out.includes(c)) out.push(c);
    if (out.length === 3) break;
  }
  return out;
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

function buildPalette(
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

// ---------------------------------------------------------------------------------------------------------------
// SVG layers. Each returns markup in scene coordinates (w×h) and draws from its own PRNG stream.
// ---------------------------------------------------------------------------------------------------------------

/** A layer and the progress from which partial renders include it (the final render has all). */
interface Layer {
  from: number;
  draw: (s: Scene) => string;
}

const LAYERS: Layer[] = [
  { from: 0, draw: skyLayer },
  { from: 0, draw: celestialLayer },
  { from: 0.34, draw: cloudLayer },
  { from: 0, draw: terrainBackLayer },
  { from: 0.34, draw: terrainFrontLayer },
  { from: 0.67, draw: detailLayer },
  { from: 0.67, draw: subjectLayer },
];

/**
 * The scene without text. Drawn in scene coordinates; `outW`×`outH` is the pixel size librsvg renders at
 * (smaller than the scene for partial renders), the viewBox maps one onto the other.
 */
function sceneSvg(s: Scene, progress: number, outW: number, outH: number): string {
  let body = '';
  for (const layer of LAYERS) if (progress >= 1 || progress >= layer.from) body += layer.draw(s);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${outW}" height="${outH}" viewBox="0 0 ${s.w} ${s.h}" preserveAspectRatio="none">` +
    body +
    '</svg>'
  );
}

function skyLayer(s: Scene): string {
  const p = s.palette;
  return (
    `<defs><linearGradient id="sky" gradientUnits="userSpaceOnUse" x1="0" y1="0" x2="0" y2="${n(s.horizon)}">` +
    `<stop offset="0" stop-color="${p.skyTop}"/><stop offset="0.55" stop-color="${p.skyMid}"/><stop offset="1" stop-color="${p.skyBottom}"/>` +
    `</linearGradient></defs><rect width="${s.w}" height="${s.h}" fill="url(#sky)"/>`
  );
}

function celestialLayer(s: Scene): string {
  const rng = streamFor(s.baseSeed, 'celestial');
  const p = s.palette;
  if (s.time === 'storm') return '';
  const { x: cx, y: cy, r } = s.light;
  const glow = r * (s.time === 'night' ? 3 : 4);
  let out =
    `<defs><radialGradient id="glow" gradientUnits="userSpaceOnUse" cx="${n(cx)}" cy="${n(cy)}" r="${n(glow)}">` +
    `<stop offset="0" stop-color="${p.light}" stop-opacity="0.6"/><stop offset="1" stop-color="${p.light}" stop-opacity="0"/>` +
    `</radialGradient></defs>` +
    `<circle cx="${n(cx)}" cy="${n(cy)}" r="${n(glow)}" fill="url(#glow)"/>` +
    `<circle cx="${n(cx)}" cy="${n(cy)}" r="${n(r)}" fill="${p.light}"/>`;
  if (s.time === 'night') {
    // Moon craters: a few slightly darker discs inside the moon.
    for (let i = 0; i < 4; i++) {
      const a = rng.range(0, Math.PI * 2);
      const d = rng.range(0, r * 0.6);
      out += `<circle cx="${n(cx + Math.cos(a) * d)}" cy="${n(cy + Math.sin(a) * d)}" r="${n(r * rng.range(0.08, 0.22))}" fill="#c9c4ad" fill-opacity="0.6"/>`;
    }
  }
  return out;
}

function cloudLayer(s: Scene): string {
  const rng = streamFor(s.baseSeed, 'clouds');
  if (s.time === 'night') return starField(s, rng);
  const count = s.time === 'storm' ? rng.int(6, 10) : rng.int(1, 5);
  const opacity = s.time === 'storm' ? 0.92 : 0.85;
  let out = `<g fill="${s.palette.cloud}" fill-opacity="${opacity}">`;
  for (let i = 0; i < count; i++) {
    const cx = s.w * rng.range(-0.05, 1.05);
    const cy = s.horizon * (s.time === 'storm' ? rng.range(0.05, 0.6) : rng.range(0.08, 0.55));
    const size = s.unit * (s.time === 'storm' ? rng.range(0.1, 0.2) : rng.range(0.05, 0.11));
    // A cloud is a flat-bottomed cluster of ellipses.
    const puffs = rng.int(3, 5);
    for (let j = 0; j < puffs; j++) {
      const dx = (j - (puffs - 1) / 2) * size * 0.8 + rng.range(-0.15, 0.15) * size;
      const ry = size * rng.range(0.45, 0.8);
      out += `<ellipse cx="${n(cx + dx)}" cy="${n(cy - ry * 0.3)}" rx="${n(size * rng.range(0.6, 0.9))}" ry="${n(ry)}"/>`;
    }
    out += `<rect x="${n(cx - size * puffs * 0.45)}" y="${n(cy - size * 0.2)}" width="${n(size * puffs * 0.9)}" height="${n(size * 0.45)}" rx="${n(size * 0.22)}"/>`;
  }
  out += '</g>';
  if (s.time === 'storm') {
    // Rain: one path of many short diagonal strokes (cheap for librsvg, unlike many elements).
    let d = '';
    const drops = rng.int(90, 160);
    for (let i = 0; i < drops; i++) {
      const x = s.w * rng.range(-0.1, 1);
      const y = s.h * rng.range(0.1, 0.95);
      const len = s.unit * rng.range(0.03, 0.06);
      d += `M${n(x)} ${n(y)}l${n(len * 0.25)} ${n(len)}`;
    }
    out += `<path d="${d}" stroke="#c9d3de" stroke-opacity="0.45" stroke-width="${n(Math.max(1, s.unit * 0.0025))}" fill="none"/>`;
    if (s.words.has('lightning') || s.words.has('thunder') || s.words.has('thunderstorm')) {
      let x = s.w * rng.range(0.2, 0.8);
      let y = s.horizon * 0.15;
      let bolt = `M${n(x)} ${n(y)}`;
      while (y < s.horizon) {
        x += s.unit * rng.range(-0.05, 0.05);
        y += s.unit * rng.range(0.03, 0.07);
        bolt += `L${n(x)} ${n(y)}`;
      }
      out += `<path d="${bolt}" stroke="#fffbe0" stroke-width="${n(Math.max(1, s.unit * 0.006))}" fill="none" stroke-linejoin="bevel"/>`;
    }
  }
  return out;
}

function starField(s: Scene, rng: Rng): string {
  let out = '<g fill="#ffffff">';
  const count = rng.int(50, 130);
  for (let i = 0; i < count; i++) {
    const r = Math.max(0.5, s.unit * rng.range(0.0008, 0.0032));
    out += `<circle cx="${n(s.w * rng.next())}" cy="${n(s.horizon * rng.range(0, 0.95))}" r="${n(r)}" fill-opacity="${n(rng.range(0.35, 1), 2)}"/>`;
  }
  return out + '</g>';
}

/** Far terrain: the layers that make the scene readable even in the coarsest preview. */
function terrainBackLayer(s: Scene): string {
  const rng = streamFor(s.baseSeed, 'terrain-back');
  const [far, mid] = s.palette.land;
  const haze = mix(far, s.palette.skyBottom, 0.35);
  switch (s.terrain) {
    case 'water': {
      // Sea from the horizon down, lighter at the horizon; a distant island on some seeds.
      let out =
        `<defs><linearGradient id="sea" gradientUnits="userSpaceOnUse" x1="0" y1="${n(s.horizon)}" x2="0" y2="${s.h}">` +
        `<stop offset="0" stop-color="${mix(mid, s.palette.skyBottom, 0.35)}"/><stop offset="1" stop-color="${s.palette.land[2]}"/>` +
        `</linearGradient></defs>`;
      if (rng.chance(0.6)) {
        const x0 = s.w * rng.range(-0.1, 0.7);
        const len = s.w * rng.range(0.15, 0.45);
        const height = s.unit * rng.range(0.025, 0.06);
        const phase = rng.range(0, Math.PI * 2);
        // A hump that meets the horizon at both ends, with a little wobble on top.
        const island = (x: number): number => {
          const t = (x - x0) / len;
          return s.horizon - height * Math.sin(Math.PI * t) * (0.75 + 0.25 * Math.sin(t * 13 + phase));
        };
        out += `<path d="${smoothArea(s, island, x0, x0 + len, 24)}" fill="${haze}"/>`;
      }
      return out + `<rect x="0" y="${n(s.horizon)}" width="${s.w}" height="${n(s.h - s.horizon)}" fill="url(#sea)"/>`;
    }
    case 'mountains':
      return mountainRange(s, rng, s.horizon - s.unit * 0.02, s.unit * rng.range(0.25, 0.4), haze, true) +
        mountainRange(s, rng, s.horizon + s.unit * 0.02, s.unit * rng.range(0.15, 0.27), mid, s.time === 'snow');
    case 'city':
      return skyline(s, rng, s.horizon + s.unit * 0.01, s.unit * 0.32, haze, false) +
        `<rect x="0" y="${n(s.horizon)}" width="${s.w}" height="${n(s.h - s.horizon)}" fill="${mix(s.palette.land[2], '#000000', 0.25)}"/>`;
    case 'desert':
      return smoothRidge(s, rng, s.horizon - s.unit * 0.03, s.unit * 0.05, far) + smoothRidge(s, rng, s.horizon + s.unit * 0.05, s.unit * 0.06, mid);
    case 'forest':
    case 'hills':
      return smoothRidge(s, rng, s.horizon - s.unit * 0.04, s.unit * 0.08, haze) + smoothRidge(s, rng, s.horizon + s.unit * 0.03, s.unit * 0.07, far);
  }
}

/** Near terrain: the foreground band. */
function terrainFrontLayer(s: Scene): string {
  const rng = streamFor(s.baseSeed, 'terrain-front');
  const near = s.palette.land[2];
  const base = s.horizon + (s.h - s.horizon) * 0.45;
  switch (s.terrain) {
    case 'water':
      return waves(s, rng);
    case 'city':
      return skyline(s, rng, s.horizon + s.unit * 0.03, s.unit * 0.45, s.palette.land[1], true);
    case 'desert':
      return smoothRidge(s, rng, base, s.unit * 0.06, near);
    case 'mountains':
    case 'forest':
    case 'hills': {
      const ridge = ridgeFn(rng, base, s.unit * 0.05, s.w);
      const out = ridgePath(s, ridge, near);
      if (s.terrain !== 'forest') return out;
      // Trees stand on the near ridge: sample its height at each trunk.
      let trees = '';
      const count = rng.int(8, 22);
      for (let i = 0; i < count; i++) {
        const x = s.w * rng.range(-0.02, 1.02);
        trees += tree(rng, x, ridge(x) + s.unit * 0.01, s.unit * rng.range(0.08, 0.16), mix(near, '#000000', rng.range(0.1, 0.35)));
      }
      return out + trees;
    }
  }
}

/** Small things: birds in daylight, lit windows are drawn with the skyline, stars with the clouds. */
function detailLayer(s: Scene): string {
  const rng = streamFor(s.baseSeed, 'details');
  if (s.time === 'night' || s.time === 'storm') return '';
  const wantsBirds = s.words.has('bird') || s.words.has('seagull') || s.words.has('gull') || rng.chance(0.5);
  if (!wantsBirds) return '';
  let d = '';
  const count = rng.int(2, 7);
  const cx = s.w * rng.range(0.2, 0.8);
  const cy = s.horizon * rng.range(0.2, 0.55);
  for (let i = 0; i < count; i++) {
    const x = cx + s.unit * rng.range(-0.18, 0.18);
    const y = cy + s.unit * rng.range(-0.08, 0.08);
    const w = s.unit * rng.range(0.012, 0.024);
    d += `M${n(x - w)} ${n(y)}Q${n(x - w / 2)} ${n(y - w * 0.6)} ${n(x)} ${n(y)}Q${n(x + w / 2)} ${n(y - w * 0.6)} ${n(x + w)} ${n(y)}`;
  }
  return `<path d="${d}" stroke="#22262e" stroke-width="${n(Math.max(1, s.unit * 0.0035))}" fill="none" stroke-linecap="round"/>`;
}

/**
 * The "subjects": 1-4 simple shapes in the prompt's accent colours, standing in the foreground with a shadow.
 * Their count, kinds and positions come from the seed; this is what makes two seeds obviously different.
 */
function subjectLayer(s: Scene): string {
  const rng = streamFor(s.baseSeed, 'subjects');
  const count = rng.int(1, 4);
  const groundTop = s.horizon + (s.h - s.horizon) * 0.35;
  const groundBottom = s.h - captionBandHeight(s);
  let out = '';
  for (let i = 0; i < count; i++) {
    const size = s.unit * rng.range(0.05, 0.11);
    // Spread across the width in slots so shapes rarely overlap.
    const x = s.w * ((i + rng.range(0.2, 0.8)) / count);
    const y = Math.max(groundTop, Math.min(groundBottom - size, groundTop + (groundBottom - groundTop) * rng.next()));
    const fill = s.palette.accents[i % s.palette.accents.length];
    const stroke = mix(fill, '#000000', 0.45);
    const sw = n(Math.max(1, size * 0.05));
    out += `<ellipse cx="${n(x)}" cy="${n(y + size * 0.95)}" rx="${n(size * 0.9)}" ry="${n(size * 0.18)}" fill="#000000" fill-opacity="0.25"/>`;
    const kind = rng.int(0, 4);
    const common = `fill="${fill}" stroke="${stroke}" stroke-width="${sw}" stroke-linejoin="round"`;
    if (kind === 0) out += `<circle cx="${n(x)}" cy="${n(y)}" r="${n(size * 0.8)}" ${common}/>`;
    else if (kind === 1) out += `<path d="M${n(x)} ${n(y - size)}L${n(x + size * 0.9)} ${n(y + size * 0.8)}L${n(x - size * 0.9)} ${n(y + size * 0.8)}Z" ${common}/>`;
    else if (kind === 2) out += `<path d="M${n(x)} ${n(y - size)}L${n(x + size * 0.75)} ${n(y)}L${n(x)} ${n(y + size * 0.9)}L${n(x - size * 0.75)} ${n(y)}Z" ${common}/>`;
    else if (kind === 3) out += `<rect x="${n(x - size * 0.75)}" y="${n(y - size * 0.7)}" width="${n(size * 1.5)}" height="${n(size * 1.5)}" rx="${n(size * 0.25)}" ${common}/>`;
    else out += `<path d="${starPath(x, y, size * 0.95, size * 0.42)}" ${common}/>`;
    // A highlight so the shapes read as objects, not holes.
    out += `<circle cx="${n(x - size * 0.3)}" cy="${n(y - size * 0.3)}" r="${n(size * 0.18)}" fill="#ffffff" fill-opacity="0.35"/>`;
  }
  return out;
}

// --- terrain helpers -------------------------------------------------------------------------------------------

/** A smooth ridge line y(x): a few sines with seeded phases, `amp` tall around `baseY`. */
function ridgeFn(rng: Rng, baseY: number, amp: number, span: number): (x: number) => number {
  const waves = [1, 2.3, 4.7].map((f, i) => ({ f: (f * rng.range(0.8, 1.2) * Math.PI * 2) / span, phase: rng.range(0, Math.PI * 2), a: 1 / (i + 1) }));
  const total = waves.reduce((sum, w) => sum + w.a, 0);
  return (x) => baseY - (amp * waves.reduce((sum, w) => sum + w.a * Math.sin(w.f * x + w.phase), 0)) / total;
}

function smoothRidge(s: Scene, rng: Rng, baseY: number, amp: number, fill: string): string {
  return ridgePath(s, ridgeFn(rng, baseY, amp, s.w), fill);
}

function ridgePath(s: Scene, ridge: (x: number) => number, fill: string): string {
  return `<path d="${smoothArea(s, ridge, 0, s.w, 32)}" fill="${fill}"/>`;
}

/**
 * The area under the curve y=f(x) for x in [x0, x1], closed along the bottom of the image. The curve is sampled
 * and joined with Catmull-Rom splines converted to cubic Béziers: smooth at 4096 px with only ~32 samples.
 */
function smoothArea(s: Scene, f: (x: number) => number, x0: number, x1: number, samples: number): string {
  const pts: [number, number][] = [];
  for (let i = 0; i <= samples; i++) {
    const x = x0 + ((x1 - x0) * i) / samples;
    pts.push([x, f(x)]);
  }
  let d = `M${n(x0)} ${s.h}L${n(pts[0][0])} ${n(pts[0][1])}`;
  for (let i = 0; i < pts.length - 1; i++) {
    const p0 = pts[Math.max(0, i - 1)];
    const p1 = pts[i];
    const p2 = pts[i + 1];
    const p3 = pts[Math.min(pts.length - 1, i + 2)];
    d +=
      `C${n(p1[0] + (p2[0] - p0[0]) / 6)} ${n(p1[1] + (p2[1] - p0[1]) / 6)} ` +
      `${n(p2[0] - (p3[0] - p1[0]) / 6)} ${n(p2[1] - (p3[1] - p1[1]) / 6)} ${n(p2[0])} ${n(p2[1])}`;
  }
  return d + `L${n(x1)} ${s.h}Z`;
}

/** Jagged peaks with straight flanks; snow caps on the high ones when `caps`. */
function mountainRange(s: Scene, rng: Rng, baseY: number, maxHeight: number, fill: string, caps: boolean): string {
  const peaks: [number, number][] = [];
  let x = -s.w * rng.range(0, 0.1);
  let valley = true;
  while (x < s.w * 1.1) {
    const height = valley ? maxHeight * rng.range(0.05, 0.3) : maxHeight * rng.range(0.5, 1);
    peaks.push([x, baseY - height]);
    x += s.unit * rng.range(0.06, 0.16);
    valley = !valley;
  }
  let d = `M${n(peaks[0][0])} ${s.h}`;
  for (const [px, py] of peaks) d += `L${n(px)} ${n(py)}`;
  d += `L${n(peaks[peaks.length - 1][0])} ${s.h}Z`;
  let out = `<path d="${d}" fill="${fill}" stroke-linejoin="round"/>`;
  if (!caps) return out;
  // Cap = the top 28% of each tall peak's triangle, with a zig-zag lower edge.
  let capsPath = '';
  for (let i = 1; i < peaks.length - 1; i++) {
    const [px, py] = peaks[i];
    if (baseY - py < maxHeight * 0.6) continue;
    const [lx, ly] = peaks[i - 1];
    const [rx, ry] = peaks[i + 1];
    const t = 0.28;
    const ax = px + (lx - px) * t;
    const ay = py + (ly - py) * t;
    const bx = px + (rx - px) * t;
    const by = py + (ry - py) * t;
    capsPath += `M${n(px)} ${n(py)}L${n(bx)} ${n(by)}L${n((px + bx) / 2)} ${n((py + by) / 2 + (by - py) * 0.25)}L${n(px)} ${n(by)}L${n((px + ax) / 2)} ${n((py + ay) / 2 + (ay - py) * 0.25)}L${n(ax)} ${n(ay)}Z`;
  }
  if (capsPath) out += `<path d="${capsPath}" fill="#f4f7fb"/>`;
  return out;
}

function skyline(s: Scene, rng: Rng, baseY: number, maxHeight: number, fill: string, windows: boolean): string {
  let body = '';
  let lit = '';
  let x = -s.unit * rng.range(0, 0.05);
  const litColour = s.time === 'night' || s.time === 'sunset' ? '#ffd977' : '#cfe3f2';
  const litChance = s.time === 'night' ? 0.45 : s.time === 'sunset' ? 0.3 : 0.18;
  while (x < s.w) {
    const bw = s.unit * rng.range(0.05, 0.11);
    const bh = maxHeight * rng.range(0.35, 1);
    body += `<rect x="${n(x)}" y="${n(baseY - bh)}" width="${n(bw + 1)}" height="${n(bh + s.h)}"/>`;
    if (windows) {
      // A grid of windows sized relative to the building, so the count stays bounded at any resolution.
      const cols = rng.int(2, 4);
      const cell = bw / (cols + 0.5);
      const rows = Math.min(18, Math.floor((bh - cell) / cell));
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          if (!rng.chance(litChance)) continue;
          lit += `<rect x="${n(x + cell * (0.5 + c) + cell * 0.15)}" y="${n(baseY - bh + cell * (0.6 + r))}" width="${n(cell * 0.55)}" height="${n(cell * 0.55)}"/>`;
        }
      }
    }
    x += bw + s.unit * rng.range(0, 0.015);
  }
  return `<g fill="${fill}">${body}</g>` + (lit ? `<g fill="${litColour}">${lit}</g>` : '');
}

function waves(s: Scene, rng: Rng): string {
  const p = s.palette;
  let out = '';
  // The sun's (or moon's) reflection: a column of short bars under it, fading with depth.
  if (s.time !== 'storm') {
    const cx = s.light.x;
    for (let i = 0; i < 12; i++) {
      const y = s.horizon + (s.h - s.horizon) * ((i + 0.5) / 12) ** 1.3;
      const half = s.unit * rng.range(0.02, 0.08) * (1 + i * 0.08);
      out += `<rect x="${n(cx - half + s.unit * rng.range(-0.02, 0.02))}" y="${n(y)}" width="${n(half * 2)}" height="${n(Math.max(1, s.unit * 0.006 * (1 + i * 0.1)))}" fill="${p.light}" fill-opacity="${n(0.55 - i * 0.035, 2)}"/>`;
    }
  }
  // Wave crests: rows get taller and further apart towards the viewer (cheap perspective).
  let d = '';
  const rows = 9;
  for (let r = 1; r <= rows; r++) {
    const y = s.horizon + (s.h - s.horizon) * (r / (rows + 1)) ** 1.5;
    const amp = s.unit * 0.004 * (1 + r);
    const wl = s.unit * (0.04 + r * 0.015);
    const phase = rng.range(0, wl);
    for (let x = -phase; x < s.w; x += wl) {
      d += `M${n(x)} ${n(y)}q${n(wl / 4)} ${n(-amp)} ${n(wl / 2)} 0`;
    }
  }
  return out + `<path d="${d}" stroke="${mix(p.skyBottom, '#ffffff', 0.4)}" stroke-opacity="0.45" stroke-width="${n(Math.max(1, s.unit * 0.003))}" fill="none" stroke-linecap="round"/>`;
}

function tree(rng: Rng, x: number, baseY: number, height: number, colour: string): string {
  const trunkW = height * 0.08;
  let out = `<rect x="${n(x - trunkW / 2)}" y="${n(baseY - height * 0.25)}" width="${n(trunkW)}" height="${n(height * 0.25)}" fill="#4a3222"/>`;
  // Two or three stacked triangles: a pine silhouette.
  const tiers = rng.int(2, 3);
  for (let t = 0; t < tiers; t++) {
    const bottom = baseY - height * (0.18 + t * 0.22);
    const top = bottom - height * 0.45;
    const half = height * (0.3 - t * 0.06);
    out += `<path d="M${n(x)} ${n(top)}L${n(x + half)} ${n(bottom)}L${n(x - half)} ${n(bottom)}Z" fill="${colour}"/>`;
  }
  return out;
}

function starPath(cx: number, cy: number, outer: number, inner: number): string {
  let d = '';
  for (let i = 0; i < 10; i++) {
    const a = -Math.PI / 2 + (i * Math.PI) / 5;
    const r = i % 2 === 0 ? outer : inner;
    d += `${i === 0 ? 'M' : 'L'}${n(cx + Math.cos(a) * r)} ${n(cy + Math.sin(a) * r)}`;
  }
  return d + 'Z';
}

// ---------------------------------------------------------------------------------------------------------------
// Text: caption band and corner label.
// ---------------------------------------------------------------------------------------------------------------

const FONT = `font-family="DejaVu Sans, Noto Sans, Liberation Sans, Arial, Helvetica, sans-serif"`;

function captionFontSize(s: Scene): number {
  // Scales with width; capped by height so a 4096×64 banner is not all caption.
  return Math.max(6, Math.round(Math.min(s.w * 0.028, s.h * 0.06)));
}

function captionBandHeight(s: Scene): number {
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
function textLayer(s: Scene, progress: number | undefined): string {
  return (captionBox(s)?.markup ?? '') + labelBox(s, progress).markup;
}

/**
 * Draws the caption and label onto an RGB buffer of the full scene size: each box is rasterised on its own (a
 * viewBox crops the markup to the box) and alpha-blended in place. Compositing full-size overlays with sharp
 * instead costs about a second at 4096², since libvips composites every pixel in float.
 */
async function drawTextInto(s: Scene, rgb: Buffer, progress: number | undefined): Promise<void> {
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

function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] ?? c);
}

const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * Truncates `text` to fit `maxWidth` px at `fontSize`, ending with "…" when cut. Widths are estimated per
 * grapheme (no font metrics at hand); the estimate errs wide, so the caption may end a little early but not
 * run off the image. Works on graphemes so an emoji or accented letter is never split; absurdly long grapheme
 * clusters (thousands of combining marks) are clipped so they cannot bloat the SVG.
 */
function fitText(text: string, maxWidth: number, fontSize: number): string {
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
  return out.trimEnd() + '…';
}

function textWidth(text: string): number {
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
  if ((cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) || (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0xff00 && cp <= 0xff60) || cp >= 0x1f000 || (cp >= 0x2600 && cp <= 0x27bf)) {
    return 1.05;
  }
  return 0.7;
}

// ---------------------------------------------------------------------------------------------------------------
// Edits and partial-render helpers.
// ---------------------------------------------------------------------------------------------------------------

/**
 * An edit: the reference, covered to the target size, graded towards a seeded gradient of the prompt's palette
 * (soft-light, so the reference stays recognisable, plus a thin wash so even dark photos take the colour),
 * darkened at the corners, captioned and labelled. Partial edits grade a low-resolution copy and upscale it,
 * like the scene previews.
 */
async function renderEdit(s: Scene, reference: Buffer, progress: number, format: OutputFormat): Promise<Buffer> {
  const final = progress >= 1;
  const { w, h } = final ? { w: s.w, h: s.h } : previewSize(s.w, s.h, progress);
  const { data, info } = await sharp(reference)
    .autoOrient()
    .resize(w, h, { fit: 'cover', position: 'centre' })
    .flatten({ background: s.palette.skyBottom })
    .toColourspace('srgb') // greyscale references would otherwise stay one band
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== w || info.height !== h) {
    throw new Error(`deepshi-sketch: unexpected decoded reference layout ${info.width}x${info.height}x${info.channels}`);
  }
  gradeInPlace(data, w, h, editGrade(s));
  const raw = { raw: { width: w, height: h, channels: 3 as const } };
  if (final) {
    await drawTextInto(s, data, undefined);
    return encode(sharp(data, raw), format);
  }
  const small = await sharp(data, raw).png({ compressionLevel: 1 }).toBuffer();
  return encode(sharp(Buffer.from(upscaleSvg(s, small, progress))), format);
}

interface Grade {
  /** Gradient end colours, 0..1 per channel. */
  from: [number, number, number];
  to: [number, number, number];
  /** Gradient direction (unit vector, in normalised image coordinates). */
  dx: number;
  dy: number;
  /** Opacity of the soft-light layer and of the normal wash on top of it. */
  softLight: number;
  wash: number;
}

/** The seed picks the gradient's direction, colours and strength: two seeds give visibly different edits. */
function editGrade(s: Scene): Grade {
  const rng = streamFor(s.baseSeed, 'edit');
  const angle = rng.range(0, Math.PI * 2);
  const strength = rng.range(0.55, 0.85);
  const unit = (hex: string): [number, number, number] => parseHex(hex).map((v) => v / 255) as [number, number, number];
  return {
    from: unit(rng.pick([s.palette.skyTop, s.palette.skyMid])),
    to: unit(rng.pick([...s.palette.accents, s.palette.land[1]])),
    dx: Math.cos(angle),
    dy: Math.sin(angle),
    softLight: strength,
    wash: strength * 0.3,
  };
}

/** Gradient positions are quantised to this many steps, each with its own 256-entry lookup table per channel. */
const GRADE_STEPS = 64;

/**
 * Applies the grade to an RGB buffer in place, using lookup tables so the per-pixel work is a few array reads:
 * ~15 ms for 1024² once warm, where compositing equivalent full-size SVG overlays with sharp took ~1.3 s at 4096².
 * The vignette (black, 0 → 50 % opacity from 55 % to 100 % of the half-diagonal) is a per-pixel multiplier.
 */
function gradeInPlace(rgb: Buffer, w: number, h: number, g: Grade): void {
  const lut = new Float32Array(GRADE_STEPS * 3 * 256);
  for (let k = 0; k < GRADE_STEPS; k++) {
    const t = k / (GRADE_STEPS - 1);
    for (let c = 0; c < 3; c++) {
      const b = g.from[c] + (g.to[c] - g.from[c]) * t;
      for (let v = 0; v < 256; v++) {
        const a = v / 255;
        const soft = a + (softLight(a, b) - a) * g.softLight;
        lut[(k * 3 + c) * 256 + v] = (soft + (b - soft) * g.wash) * 255;
      }
    }
  }
  // Gradient position t = projection of the normalised pixel position on the direction, mapped to 0..1 and
  // then to a LUT step; split into per-column and per-row parts so the inner loop only adds.
  const span = Math.abs(g.dx) + Math.abs(g.dy);
  const stepScale = (GRADE_STEPS - 1) / span;
  const colK = new Float32Array(w);
  const colV = new Float32Array(w);
  for (let x = 0; x < w; x++) {
    const u = (x + 0.5) / w - 0.5;
    colK[x] = u * g.dx * stepScale;
    colV[x] = (u / 0.75) ** 2;
  }
  // Vignette multiplier by squared radius (max 0.89 for pixel centres), quantised to VIGNETTE_STEPS.
  const shade = new Float32Array(VIGNETTE_STEPS + 1);
  for (let i = 0; i <= VIGNETTE_STEPS; i++) {
    const r = Math.sqrt(i / VIGNETTE_STEPS);
    shade[i] = 1 - 0.5 * Math.min(1, Math.max(0, (r - 0.55) / 0.45));
  }
  // Writes through a clamped view: assignment rounds and clamps, no Math.round in the hot loop.
  const out = new Uint8ClampedArray(rgb.buffer, rgb.byteOffset, rgb.length);
  for (let y = 0; y < h; y++) {
    const v = (y + 0.5) / h - 0.5;
    const rowK = v * g.dy * stepScale + (GRADE_STEPS - 1) / 2 + 0.5;
    const rowV = (v / 0.75) ** 2;
    let i = y * w * 3;
    for (let x = 0; x < w; x++, i += 3) {
      let k = (colK[x] + rowK) | 0;
      k = k < 0 ? 0 : k >= GRADE_STEPS ? GRADE_STEPS - 1 : k;
      const r2 = colV[x] + rowV;
      const m = shade[r2 >= 1 ? VIGNETTE_STEPS : (r2 * VIGNETTE_STEPS) | 0];
      const base = k * 768;
      out[i] = lut[base + rgb[i]] * m;
      out[i + 1] = lut[base + 256 + rgb[i + 1]] * m;
      out[i + 2] = lut[base + 512 + rgb[i + 2]] * m;
    }
  }
}

const VIGNETTE_STEPS = 4096;

/** The W3C compositing spec's soft-light blend of backdrop `a` with source `b` (both 0..1). */
function softLight(a: number, b: number): number {
  if (b <= 0.5) return a - (1 - 2 * b) * a * (1 - a);
  const d = a <= 0.25 ? ((16 * a - 12) * a + 4) * a : Math.sqrt(a);
  return a + (2 * b - 1) * (d - a);
}

/** Size a partial render is drawn at: 1/16 of the target at progress 0, growing to 1/4 just before the end. */
function previewSize(width: number, height: number, progress: number): { w: number; h: number } {
  const scale = 1 / 16 + (1 / 4 - 1 / 16) * progress;
  return { w: Math.max(1, Math.round(width * scale)), h: Math.max(1, Math.round(height * scale)) };
}

function normalizeProgress(progress: number | undefined): number {
  if (progress === undefined || !Number.isFinite(progress)) return 1;
  return Math.min(1, Math.max(0, progress));
}

/** Opaque output: drop the alpha channel librsvg/composite leave behind (smaller, faster PNGs). */
function encode(pipeline: Sharp, format: OutputFormat): Promise<Buffer> {
  return applyEncoder(pipeline.removeAlpha(), format).toBuffer();
}

// ---------------------------------------------------------------------------------------------------------------
// Seeded randomness and colour maths.
// ---------------------------------------------------------------------------------------------------------------

/** xmur3 string hash: returns a generator of well-mixed 32-bit seeds derived from the string. */
function hashString(str: string): () => number {
  let h = 1779033703 ^ str.length;
  for (let i = 0; i < str.length; i++) {
    h = Math.imul(h ^ str.charCodeAt(i), 3432918353);
    h = (h << 13) | (h >>> 19);
  }
  return () => {
    h = Math.imul(h ^ (h >>> 16), 2246822507);
    h = Math.imul(h ^ (h >>> 13), 3266489909);
    return (h ^= h >>> 16) >>> 0;
  };
}

interface Rng {
  next(): number;
  range(min: number, max: number): number;
  /** Inclusive. */
  int(min: number, max: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
}

/** mulberry32: tiny, fast, good enough for layout; seeded per layer from the scene's base seed. */
function streamFor(baseSeed: number, layer: string): Rng {
  let a = (baseSeed ^ hashString(layer)()) >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    range: (min, max) => min + (max - min) * next(),
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    chance: (p) => next() < p,
    pick: (items) => items[Math.floor(next() * items.length)],
  };
}

/** Compact, deterministic number formatting for SVG attributes (one decimal is plenty at pixel scale). */
function n(value: number, digits = 1): string {
  const f = 10 ** digits;
  const r = Math.round(value * f) / f;
  return Object.is(r, -0) ? '0' : String(r);
}

function parseHex(hex: string): [number, number, number] {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function toHex(r: number, g: number, b: number): string {
  const c = (x: number): string => Math.max(0, Math.min(255, Math.round(x))).toString(16).padStart(2, '0');
  return `#${c(r)}${c(g)}${c(b)}`;
}

/** Linear blend of two #rrggbb colours; t=0 → a, t=1 → b. */
function mix(a: string, b: string, t: number): string {
  const [ar, ag, ab] = parseHex(a);
  const [br, bg, bb] = parseHex(b);
  return toHex(ar + (br - ar) * t, ag + (bg - ag) * t, ab + (bb - ab) * t);
}

function hsl(hue: number, sat: number, light: number): string {
  const h = (((hue % 360) + 360) % 360) / 360;
  const q = light < 0.5 ? light * (1 + sat) : light + sat - light * sat;
  const p = 2 * light - q;
  const channel = (t: number): number => {
    const x = t < 0 ? t + 1 : t > 1 ? t - 1 : t;
    if (x < 1 / 6) return p + (q - p) * 6 * x;
    if (x < 1 / 2) return q;
    if (x < 2 / 3) return p + (q - p) * (2 / 3 - x) * 6;
    return p;
  };
  return toHex(channel(h + 1 / 3) * 255, channel(h) * 255, channel(h - 1 / 3) * 255);
}
