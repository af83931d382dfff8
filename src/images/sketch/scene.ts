import type { Scene } from './plan.ts';
import { streamFor, type Rng } from './random.ts';
import { mix } from './colour.ts';
import { n } from './svg.ts';
import { captionBandHeight } from './caption.ts';
import { terrainBackLayer, terrainFrontLayer } from './terrain.ts';

/**
 * The picture as SVG: the ordered layer list (which partial renders cut by progress) and the sky, light,
 * weather, detail and subject layers. Each layer returns markup in scene coordinates (w×h) and draws from its
 * own PRNG stream.
 */

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
export function sceneSvg(s: Scene, progress: number, outW: number, outH: number, options: { sky?: boolean } = {}): string {
  let body = '';
  for (const layer of LAYERS) {
    // Without the sky the scene stands on a transparent background (OpenAI's background: "transparent").
    if (layer.draw === skyLayer && options.sky === false) continue;
    if (progress >= 1 || progress >= layer.from) body += layer.draw(s);
  }
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
  return `${out}</g>`;
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
    else if (kind === 1)
      out += `<path d="M${n(x)} ${n(y - size)}L${n(x + size * 0.9)} ${n(y + size * 0.8)}L${n(x - size * 0.9)} ${n(y + size * 0.8)}Z" ${common}/>`;
    else if (kind === 2)
      out += `<path d="M${n(x)} ${n(y - size)}L${n(x + size * 0.75)} ${n(y)}L${n(x)} ${n(y + size * 0.9)}L${n(x - size * 0.75)} ${n(y)}Z" ${common}/>`;
    else if (kind === 3)
      out += `<rect x="${n(x - size * 0.75)}" y="${n(y - size * 0.7)}" width="${n(size * 1.5)}" height="${n(size * 1.5)}" rx="${n(size * 0.25)}" ${common}/>`;
    else out += `<path d="${starPath(x, y, size * 0.95, size * 0.42)}" ${common}/>`;
    // A highlight so the shapes read as objects, not holes.
    out += `<circle cx="${n(x - size * 0.3)}" cy="${n(y - size * 0.3)}" r="${n(size * 0.18)}" fill="#ffffff" fill-opacity="0.35"/>`;
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
  return `${d}Z`;
}
