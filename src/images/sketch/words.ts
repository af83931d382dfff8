/**
 * The prompt vocabulary: which words mean which time of day, terrain or colour. Kept apart from the colours
 * those moods get (palette.ts) so extending the vocabulary never touches the look, and vice versa.
 */

export type TimeOfDay = 'day' | 'sunset' | 'night' | 'storm' | 'snow';
export type Terrain = 'hills' | 'water' | 'mountains' | 'city' | 'forest' | 'desert';

export const TIME_WORDS: Record<string, TimeOfDay> = wordTable({
  night: 'night nights midnight moon moonlit moonlight star stars starry galaxy space cosmic nebula nocturnal',
  sunset: 'sunset sunrise dusk dawn twilight golden evening sundown',
  storm: 'storm stormy rain rainy thunder thunderstorm lightning fog foggy mist misty cloudy overcast gloomy',
  snow: 'snow snowy winter ice icy frozen arctic glacier frost frosty',
  day: 'day daytime sunny noon morning summer bright',
});

export const TERRAIN_WORDS: Record<string, Terrain> = wordTable({
  water: 'ocean sea seas beach coast wave waves lake river water shore harbor harbour island boat ship sail surf',
  mountains: 'mountain mountains peak peaks alps alpine cliff cliffs canyon volcano summit',
  city: 'city skyline town street building buildings skyscraper skyscrapers downtown urban cyberpunk metropolis',
  forest: 'forest tree trees woods woodland jungle pine pines garden park',
  desert: 'desert dune dunes sand sahara cactus pyramid pyramids oasis',
  hills: 'hill hills meadow field fields valley countryside farm grass prairie',
});

const COLOUR_WORDS: Record<string, string> = {
  red: '#d63a3a',
  crimson: '#b3173b',
  scarlet: '#e03a1e',
  orange: '#ee8a2a',
  amber: '#f0a81c',
  yellow: '#f2d13a',
  gold: '#e0b12e',
  golden: '#e0b12e',
  lime: '#9ccc3b',
  green: '#3f9e4d',
  emerald: '#1f9e6e',
  teal: '#1f8f8a',
  cyan: '#2ab7c9',
  turquoise: '#35c0b0',
  blue: '#2f6fd6',
  azure: '#3b8fe0',
  navy: '#1d2f6b',
  indigo: '#3f3a9e',
  violet: '#7a4bd1',
  purple: '#8a3fb0',
  magenta: '#c93aa8',
  pink: '#ef7fb0',
  rose: '#e0607e',
  brown: '#8a5a36',
  black: '#1d1d22',
  white: '#f4f4f0',
  grey: '#8b9098',
  gray: '#8b9098',
  silver: '#b8bec7',
};

function wordTable<T extends string>(groups: Record<T, string>): Record<string, T> {
  const table: Record<string, T> = Object.create(null) as Record<string, T>;
  for (const key of Object.keys(groups) as T[]) for (const word of groups[key].split(' ')) table[word] = key;
  return table;
}

/** The first keyword in prompt order wins: "a city at night" is a night city; "night" alone does not pick a terrain. */
export function firstMatch<T>(tokens: string[], table: Record<string, T>): T | undefined {
  for (const t of tokens) {
    const hit = Object.hasOwn(table, t) ? table[t] : undefined;
    if (hit !== undefined) return hit;
  }
  return undefined;
}

export function uniqueColours(tokens: string[]): string[] {
  const out: string[] = [];
  for (const t of tokens) {
    const c = Object.hasOwn(COLOUR_WORDS, t) ? COLOUR_WORDS[t] : undefined;
    if (c !== undefined && !out.includes(c)) out.push(c);
    if (out.length === 3) break;
  }
  return out;
}
