/**
 * The shipped catalog (catalog/models.yaml) is pure data. These tests check that it validates against the
 * schema and that its pieces agree with each other: enums and defaults, size tables and param enums, price
 * tables and the params they key on, edit caps and modalities.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { catalogSchema, type CatalogFile, type ImageCatalogFileModel, type ParamSpec } from '../../src/catalog/schema.ts';

const catalogPath = fileURLToPath(new URL('../../catalog/models.yaml', import.meta.url));
const raw: unknown = parse(readFileSync(catalogPath, 'utf8'));
const result = catalogSchema.safeParse(raw);
const catalog: CatalogFile = result.success ? result.data : { version: 1, models: [] };
/** The image models: sizes, formats, edits and per-image prices apply to them only. */
const imageModels = catalog.models.filter((model): model is ImageCatalogFileModel => model.kind === 'image');

const EXPECTED_IDS = [
  'deepshi-sketch',
  'deepshi-echo',
  'gpt-image-1.5',
  'gpt-image-2',
  'nano-banana-2',
  'nano-banana-pro',
  'flux-2-pro',
  'seedream-4.5',
  'grok-imagine',
  'grok-imagine-quality',
  'deepshi-banana-pro',
  'deepshi-image-1',
  'gpt-4o-mini',
  'gpt-4o',
  'deepshi-2.0',
  'deepshi-3.0',
];

function parseSize(size: string): { w: number; h: number } {
  const m = /^(\d+)x(\d+)$/.exec(size);
  assert.ok(m, `"${size}" is not WxH`);
  const w = Number(m[1]);
  const h = Number(m[2]);
  assert.ok(Number.isSafeInteger(w) && w > 0 && Number.isSafeInteger(h) && h > 0, `"${size}" has a zero or huge side`);
  return { w, h };
}

/** "16:9" → 16/9; "9:19.5" → 9/19.5; undefined when the string is not a ratio. */
function parseRatio(ratio: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)$/.exec(ratio);
  return m ? Number(m[1]) / Number(m[2]) : undefined;
}

function enumOf(model: ImageCatalogFileModel, name: string): string[] {
  const p: ParamSpec | undefined = model.params[name];
  assert.ok(p, `${model.id}: param "${name}" is missing`);
  assert.equal(p.type, 'string', `${model.id}: param "${name}" must be a string enum`);
  return p.type === 'string' ? p.enum : [];
}

function sameSet(actual: string[], expected: string[], what: string): void {
  assert.deepEqual([...actual].sort(), [...expected].sort(), what);
}

function usdToNanos(usd: string): bigint {
  const [int, frac = ''] = usd.split('.');
  return BigInt(int) * 1_000_000_000n + BigInt(frac.padEnd(9, '0'));
}

function fitsCustomSize(model: ImageCatalogFileModel, w: number, h: number): string | undefined {
  const c = model.sizing.custom_size;
  if (!c) return 'no custom_size';
  if (Math.min(w, h) < c.min_side) return 'side below min_side';
  if (Math.max(w, h) > c.max_side) return 'side above max_side';
  if (w % c.multiple_of !== 0 || h % c.multiple_of !== 0) return 'side not a multiple';
  if (c.min_pixels !== undefined && w * h < c.min_pixels) return 'below min_pixels';
  if (c.max_pixels !== undefined && w * h > c.max_pixels) return 'above max_pixels';
  if (c.max_aspect_ratio !== undefined && Math.max(w, h) / Math.min(w, h) > c.max_aspect_ratio) return 'ratio too wide';
  return undefined;
}

describe('catalog/models.yaml', () => {
  it('validates against catalogSchema', () => {
    assert.ok(result.success, result.success ? '' : JSON.stringify(result.error.issues, null, 2));
    assert.equal(catalog.version, 1);
  });

  it('lists the shipped models, in order, with unique ids', () => {
    const ids = catalog.models.map((m) => m.id);
    assert.equal(new Set(ids).size, ids.length, `duplicate ids in ${ids.join(', ')}`);
    assert.deepEqual(ids, EXPECTED_IDS);
  });

  it('keeps the basic limits consistent', () => {
    for (const m of imageModels) {
      assert.ok(m.max_n >= 1 && m.max_n <= 4, `${m.id}: max_n ${m.max_n} outside 1-4`);
      assert.ok(m.output_formats.includes(m.native_output_format), `${m.id}: native format not in output_formats`);
      assert.equal(new Set(m.output_formats).size, m.output_formats.length, `${m.id}: duplicate output formats`);
      if (!m.streaming) assert.equal(m.max_partial_images, 0, `${m.id}: partial images without streaming`);
      assert.ok(m.description && m.description.trim().length > 0, `${m.id}: description missing`);
      assert.ok(m.created > 1_600_000_000 && m.created < 2_000_000_000, `${m.id}: created ${m.created} is not plausible unix seconds`);
      assert.deepEqual(m.modalities.output, ['image'], `${m.id}: image models output images`);
    }
  });

  it('has an edit block that agrees with max_images and modalities', () => {
    for (const m of imageModels) {
      if (m.edit.supported) {
        assert.ok(m.edit.max_images >= 1 && m.edit.max_images <= 14, `${m.id}: edit max_images ${m.edit.max_images} outside 1-14`);
        assert.ok(m.modalities.input.includes('image'), `${m.id}: edits need image input modality`);
      } else {
        assert.equal(m.edit.max_images, 0, `${m.id}: edit unsupported but max_images is ${m.edit.max_images}`);
        assert.ok(!m.modalities.input.includes('image'), `${m.id}: image input modality without edit support`);
      }
      assert.ok(m.modalities.input.includes('text'), `${m.id}: prompts are text`);
    }
  });

  it('has params whose defaults are valid', () => {
    for (const m of imageModels) {
      for (const [name, p] of Object.entries(m.params)) {
        const where = `${m.id}.params.${name}`;
        if (p.type === 'string') {
          assert.equal(new Set(p.enum).size, p.enum.length, `${where}: duplicate enum values`);
          if (p.default !== undefined) assert.ok(p.enum.includes(p.default), `${where}: default "${p.default}" not in enum`);
          if (p.allow_custom_size) assert.ok(m.sizing.custom_size, `${where}: allow_custom_size without sizing.custom_size`);
        } else if (p.type === 'integer') {
          assert.ok(p.min <= p.max, `${where}: min > max`);
          if (p.default !== undefined) {
            assert.ok(p.default >= p.min && p.default <= p.max, `${where}: default outside [min, max]`);
            if (p.multiple_of) assert.equal(p.default % p.multiple_of, 0, `${where}: default not a multiple of ${p.multiple_of}`);
          }
          if (p.multiple_of) {
            assert.equal(p.min % p.multiple_of, 0, `${where}: min not a multiple of ${p.multiple_of}`);
            assert.equal(p.max % p.multiple_of, 0, `${where}: max not a multiple of ${p.multiple_of}`);
          }
        }
      }
    }
  });

  it('has size tables keyed exactly by the param enums, with WxH sizes of the right shape', () => {
    for (const m of imageModels) {
      const { style, table, also_resolution_tier } = m.sizing;
      const tiered = style === 'resolution_tier' || (style === 'pixel_dimensions' && also_resolution_tier === true);
      if (style === 'pixel_dimensions' && !tiered) {
        assert.equal(table, undefined, `${m.id}: plain pixel_dimensions model has a table`);
        continue;
      }
      assert.ok(table, `${m.id}: ${style} sizing needs a table`);
      let columnParam: string;
      if (tiered) {
        sameSet(Object.keys(table), enumOf(m, 'resolution'), `${m.id}: table rows must be the resolution enum`);
        columnParam = 'aspect_ratio';
      } else {
        assert.deepEqual(Object.keys(table), ['*'], `${m.id}: ${style} table has the single row "*"`);
        columnParam = style === 'aspect_ratio' ? 'aspect_ratio' : 'image_size';
      }
      const columns = enumOf(m, columnParam);
      for (const [row, cells] of Object.entries(table)) {
        sameSet(Object.keys(cells), columns, `${m.id}: table["${row}"] columns must be the ${columnParam} enum`);
        for (const [key, size] of Object.entries(cells)) {
          const where = `${m.id}: table["${row}"]["${key}"] = ${size}`;
          const { w, h } = parseSize(size);
          const ratio = parseRatio(key);
          if (ratio !== undefined) {
            assert.ok(Math.abs(w / h / ratio - 1) < 0.03, `${where}: does not match the ratio`);
          }
          if (/^\d+x\d+$/.test(key)) assert.equal(size, key, `${where}: a WxH preset must map to itself`);
          const named = /^(portrait|landscape)_(\d+)_(\d+)$/.exec(key);
          if (named) {
            const long = Math.max(Number(named[2]), Number(named[3]));
            const short = Math.min(Number(named[2]), Number(named[3]));
            const want = named[1] === 'portrait' ? short / long : long / short;
            assert.ok(Math.abs(w / h / want - 1) < 0.03, `${where}: does not match its preset name`);
          }
        }
      }
    }
  });

  it('keeps pixel-dimension defaults, limits and tables consistent', () => {
    for (const m of imageModels) {
      if (m.sizing.style !== 'pixel_dimensions') continue;
      const width = m.params.width;
      const height = m.params.height;
      assert.ok(width?.type === 'integer' && height?.type === 'integer', `${m.id}: needs integer width and height`);
      const c = m.sizing.custom_size;
      if (c) {
        for (const p of [width, height]) {
          assert.equal(p.min, c.min_side, `${m.id}: param min and custom_size.min_side differ`);
          assert.equal(p.max, c.max_side, `${m.id}: param max and custom_size.max_side differ`);
          assert.equal(p.multiple_of ?? 1, c.multiple_of, `${m.id}: param multiple_of and custom_size.multiple_of differ`);
        }
        if (width.default !== undefined && height.default !== undefined) {
          const why = fitsCustomSize(m, width.default, height.default);
          assert.equal(why, undefined, `${m.id}: default size breaks custom_size (${why})`);
        }
      }
      if (m.sizing.also_resolution_tier && m.sizing.table) {
        // Every table size must also be a legal width/height, and the tier defaults must give the same size
        // as the width/height defaults.
        for (const [row, cells] of Object.entries(m.sizing.table)) {
          for (const [col, size] of Object.entries(cells)) {
            const { w, h } = parseSize(size);
            const sides: Array<[number, typeof width]> = [
              [w, width],
              [h, height],
            ];
            for (const [side, p] of sides) {
              assert.ok(side >= p.min && side <= p.max, `${m.id}: table["${row}"]["${col}"] side ${side} outside [${p.min}, ${p.max}]`);
              if (p.multiple_of)
                assert.equal(side % p.multiple_of, 0, `${m.id}: table["${row}"]["${col}"] side ${side} not a multiple of ${p.multiple_of}`);
            }
          }
        }
        const res = m.params.resolution;
        const ar = m.params.aspect_ratio;
        assert.ok(res?.type === 'string' && ar?.type === 'string' && res.default && ar.default, `${m.id}: tier params need defaults`);
        const tierDefault = m.sizing.table[res.default]?.[ar.default];
        assert.equal(tierDefault, `${width.default}x${height.default}`, `${m.id}: tier default and width/height default differ`);
      }
    }
  });

  it('has preset tables whose sizes pass the model custom-size rules', () => {
    for (const m of imageModels) {
      if (m.sizing.style !== 'preset_size' || !m.sizing.custom_size || !m.sizing.table) continue;
      for (const [key, size] of Object.entries(m.sizing.table['*'] ?? {})) {
        const { w, h } = parseSize(size);
        const why = fitsCustomSize(m, w, h);
        assert.equal(why, undefined, `${m.id}: preset ${key} = ${size} breaks custom_size (${why})`);
      }
    }
  });

  it('has the offline model keep every side at or under 4096 in multiples of 8', () => {
    const sketch = imageModels.find((m) => m.id === 'deepshi-sketch');
    assert.ok(sketch?.sizing.table);
    assert.deepEqual(sketch.routes, [{ provider: 'offline' }]);
    for (const cells of Object.values(sketch.sizing.table)) {
      for (const size of Object.values(cells)) {
        const { w, h } = parseSize(size);
        assert.ok(w <= 4096 && h <= 4096 && w % 8 === 0 && h % 8 === 0, `deepshi-sketch: ${size}`);
      }
    }
  });

  it('has per-image price tables keyed by enum values of the `by` params, covering every combination', () => {
    for (const m of imageModels) {
      const p = m.pricing;
      if (p.unit === 'image') {
        usdToNanos(p.base);
        if (!p.table) {
          assert.equal(p.by, undefined, `${m.id}: pricing.by without a table`);
          continue;
        }
        assert.ok(p.by && p.by.length > 0, `${m.id}: pricing.table without by`);
        const enums = p.by.map((name) => enumOf(m, name));
        for (const key of Object.keys(p.table)) {
          const parts = key.split('/');
          assert.ok(parts.length <= p.by.length, `${m.id}: price key "${key}" has more parts than by`);
          parts.forEach((part, i) => {
            assert.ok(enums[i].includes(part), `${m.id}: price key "${key}": "${part}" is not a ${p.by![i]} value`);
          });
        }
        // Every full combination must resolve to a table entry (most specific key first, then prefixes),
        // so `base` is a fallback for custom values only.
        const combos = enums.reduce<string[][]>((acc, values) => acc.flatMap((c) => values.map((v) => [...c, v])), [[]]);
        for (const combo of combos) {
          const found = combo.some((_, i) => p.table![combo.slice(0, combo.length - i).join('/')] !== undefined);
          assert.ok(found, `${m.id}: no price for ${combo.join('/')}`);
        }
        // base is the fallback: it must not be below any table price (a gap may over-hold, never under-hold).
        const maxTable = Object.values(p.table)
          .map(usdToNanos)
          // biome-ignore lint/complexity/useMathMinMax: these are bigints, which Math.max does not take.
          .reduce((a, b) => (a > b ? a : b));
        assert.ok(usdToNanos(p.base) >= maxTable, `${m.id}: base ${p.base} is below a table price`);
        // A model with custom sizes prices them per started megapixel, for every value of the params before the size
        // (so the charge of a custom size is its list price, never `base`).
        const sizeParam = m.params[p.by[p.by.length - 1]];
        if (p.by.length > 1 && sizeParam?.type === 'string' && sizeParam.allow_custom_size) {
          for (const v of enums[0]) {
            assert.ok(p.custom_size_megapixel?.[v] !== undefined, `${m.id}: no custom-size price per megapixel for "${v}"`);
          }
        }
      } else if (p.unit === 'megapixel') {
        for (const v of [p.first, p.additional, p.input ?? '0']) usdToNanos(v);
      }
    }
  });

  it('gives every upstream route a credential variable and a provider', () => {
    for (const m of catalog.models) {
      for (const r of m.routes) {
        if (r.provider === 'offline') continue;
        assert.match(r.credentials_env ?? '', /^[A-Z][A-Z0-9_]*$/, `${m.id}: route ${r.provider} needs credentials_env`);
        if (r.base_url_env !== undefined) assert.match(r.base_url_env, /^[A-Z][A-Z0-9_]*$/, `${m.id}: base_url_env`);
        assert.ok(r.upstream_model || r.options?.endpoint, `${m.id}: route ${r.provider} names no upstream model or endpoint`);
      }
    }
  });

  it('has deepshi-echo: an offline text model priced per token, honest about being a stand-in', () => {
    const echo = catalog.models.find((m) => m.id === 'deepshi-echo');
    assert.ok(echo && echo.kind === 'text', 'deepshi-echo is a text model');
    assert.deepEqual(echo.modalities, { input: ['text'], output: ['text'] });
    assert.deepEqual(echo.routes, [{ provider: 'offline' }]);
    assert.equal(echo.pricing.unit, 'token');
    assert.ok(echo.max_output_tokens < echo.context_window);
    assert.match(echo.description ?? '', /not a language model/);
  });

  it('has the launch text models as the docs describe them: deepshi-2.0 without tools, deepshi-3.0 reasoning with tools and JSON, gpt-4o', () => {
    const text = (id: string) => {
      const model = catalog.models.find((m) => m.id === id);
      assert.ok(model && model.kind === 'text', `${id} is a text model`);
      return model;
    };
    const two = text('deepshi-2.0');
    const three = text('deepshi-3.0');
    const gpt = text('gpt-4o');
    assert.ok(!two.supported_features.includes('tools'), 'Deepshi 2.0 does not support tools [docs §10]');
    assert.ok(!two.supported_features.includes('reasoning'));
    for (const feature of ['tools', 'reasoning', 'json', 'structured', 'logprobs'] as const)
      assert.ok(three.supported_features.includes(feature), `deepshi-3.0 ${feature}`);
    assert.ok(gpt.supported_features.includes('tools') && !gpt.supported_features.includes('reasoning'));
    // Routed to the operator's own servers exactly as deepshi-image-1 is, and to OpenAI.
    assert.deepEqual(
      two.routes.map((r) => [r.provider, r.credentials_env, r.base_url_env]),
      [['openai-compatible', 'DEEPSHI_2_0_API_KEY', 'DEEPSHI_2_0_BASE_URL']],
    );
    assert.deepEqual(
      three.routes.map((r) => [r.provider, r.credentials_env, r.base_url_env]),
      [['openai-compatible', 'DEEPSHI_3_0_API_KEY', 'DEEPSHI_3_0_BASE_URL']],
    );
    assert.deepEqual(
      gpt.routes.map((r) => [r.provider, r.credentials_env, r.base_url_env, r.base_url]),
      [['openai-compatible', 'OPENAI_API_KEY', 'OPENAI_BASE_URL', 'https://api.openai.com/v1']],
    );
    const image1 = catalog.models.find((m) => m.id === 'deepshi-image-1')!;
    assert.equal(image1.routes[0].base_url, undefined, 'like deepshi-image-1: no public default base URL');
    assert.equal(two.routes[0].base_url, undefined);
    assert.equal(three.routes[0].base_url, undefined);
    for (const model of [two, three, gpt]) {
      assert.equal(model.pricing.unit, 'token');
      assert.ok(model.max_output_tokens < model.context_window);
      for (const name of ['temperature', 'top_p', 'max_tokens', 'max_completion_tokens', 'stop', 'seed'] as const)
        assert.ok(model.supported_sampling_parameters.includes(name), `${model.id} ${name}`);
    }
    // The docs' only worked price (22 prompt + 8 completion tokens = $0.000135, §3) at deepshi-3.0's and gpt-4o's rates.
    for (const model of [three, gpt]) {
      assert.ok(model.pricing.unit === 'token');
      assert.equal(22 * Number(model.pricing.input_per_million) + 8 * Number(model.pricing.output_per_million), 135);
    }
  });

  it('marks every launch text model price that is not in the docs', () => {
    const source = readFileSync(catalogPath, 'utf8');
    for (const id of ['gpt-4o', 'deepshi-2.0', 'deepshi-3.0']) {
      const entry = source.slice(source.indexOf(`- id: ${id}\n`), source.indexOf('routes:', source.indexOf(`- id: ${id}\n`)));
      for (const line of entry.split('\n').filter((l) => /_per_million:/.test(l)))
        assert.match(line, /# \[(R|I)\]/, `${id}: ${line.trim()}`);
    }
  });
});
