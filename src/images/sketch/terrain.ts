import type { Scene } from './plan.ts';
import { streamFor, type Rng } from './random.ts';
import { mix } from './colour.ts';
import { n } from './svg.ts';

/**
 * The land: far and near terrain layers for each terrain kind (hills, water, mountains, city, forest, desert)
 * and the seeded geometry they are built from (ridges, peaks, skylines, waves, trees).
 */

/** Far terrain: the layers that make the scene readable even in the coarsest preview. */
export function terrainBackLayer(s: Scene): string {
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
      return `${out}<rect x="0" y="${n(s.horizon)}" width="${s.w}" height="${n(s.h - s.horizon)}" fill="url(#sea)"/>`;
    }
    case 'mountains':
      return (
        mountainRange(s, rng, s.horizon - s.unit * 0.02, s.unit * rng.range(0.25, 0.4), haze, true) +
        mountainRange(s, rng, s.horizon + s.unit * 0.02, s.unit * rng.range(0.15, 0.27), mid, s.time === 'snow')
      );
    case 'city':
      return (
        skyline(s, rng, s.horizon + s.unit * 0.01, s.unit * 0.32, haze, false) +
        `<rect x="0" y="${n(s.horizon)}" width="${s.w}" height="${n(s.h - s.horizon)}" fill="${mix(s.palette.land[2], '#000000', 0.25)}"/>`
      );
    case 'desert':
      return (
        smoothRidge(s, rng, s.horizon - s.unit * 0.03, s.unit * 0.05, far) +
        smoothRidge(s, rng, s.horizon + s.unit * 0.05, s.unit * 0.06, mid)
      );
    case 'forest':
    case 'hills':
      return (
        smoothRidge(s, rng, s.horizon - s.unit * 0.04, s.unit * 0.08, haze) +
        smoothRidge(s, rng, s.horizon + s.unit * 0.03, s.unit * 0.07, far)
      );
  }
}

/** Near terrain: the foreground band. */
export function terrainFrontLayer(s: Scene): string {
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

/** A smooth ridge line y(x): a few sines with seeded phases, `amp` tall around `baseY`. */
function ridgeFn(rng: Rng, baseY: number, amp: number, span: number): (x: number) => number {
  const waves = [1, 2.3, 4.7].map((f, i) => ({
    f: (f * rng.range(0.8, 1.2) * Math.PI * 2) / span,
    phase: rng.range(0, Math.PI * 2),
    a: 1 / (i + 1),
  }));
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
  return `${d}L${n(x1)} ${s.h}Z`;
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
  return `<g fill="${fill}">${body}</g>${lit ? `<g fill="${litColour}">${lit}</g>` : ''}`;
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
  return `${out}<path d="${d}" stroke="${mix(p.skyBottom, '#ffffff', 0.4)}" stroke-opacity="0.45" stroke-width="${n(Math.max(1, s.unit * 0.003))}" fill="none" stroke-linecap="round"/>`;
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
