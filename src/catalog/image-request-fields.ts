import { readInteger, toBoolean, toInteger } from './body-fields.ts';
import { invalidRequest } from '../domain/errors.ts';
import type { Warning } from '../domain/warnings.ts';
import type { ImageFormat, InputImage } from '../domain/requests.ts';
import type { ImageCatalogModel } from './catalog.ts';
import type { ParamSpec } from './schema.ts';

/** The field readers of an image request (image-request.ts): OpenAI's size, input shape, compression, output size, model params. */

/**
 * Maps OpenAI's `size` onto the model's sizing; true when it set a size. `auto` (an SDK value) is the model's own
 * choice where its image_size offers one (gpt-image), and its default size everywhere else.
 */
export function applyOpenAiSize(
  body: Record<string, unknown>,
  model: ImageCatalogModel,
  params: Record<string, string | number | boolean>,
  given: Set<string>,
  warnings: Warning[],
  coerce: boolean,
): boolean {
  const size = body.size;
  if (size === undefined || size === null) return false;
  if (typeof size !== 'string') throw invalidRequest('\'size\' must be a string such as "1024x1024".', 'size', 'invalid_type');
  if (size === 'auto') {
    const imageSize = model.params.image_size;
    if (imageSize?.type !== 'string' || !imageSize.enum.includes('auto') || given.has('image_size')) return false;
    params.image_size = 'auto';
    given.add('image_size');
    return true;
  }
  if ('image_size' in model.params && !given.has('image_size')) {
    const spec = model.params.image_size;
    const value = readParam({ image_size: size }, 'image_size', spec, model, coerce, 'size');
    if (value !== undefined) {
      params.image_size = value;
      given.add('image_size');
    }
    return true;
  }
  if ('width' in model.params && 'height' in model.params && !given.has('width') && !given.has('height')) {
    const match = /^(\d{1,5})x(\d{1,5})$/.exec(size);
    if (!match) throw invalidRequest(`'size' must look like "1024x1024" (or "auto") for ${model.id}; got "${size.slice(0, 40)}".`, 'size');
    params.width = readParam({ width: Number(match[1]) }, 'width', model.params.width, model, false, 'size') as number;
    params.height = readParam({ height: Number(match[2]) }, 'height', model.params.height, model, false, 'size') as number;
    given.add('width');
    given.add('height');
    return true;
  }
  if (given.has('image_size') || given.has('width')) return false;
  warnings.push({
    type: 'unsupported',
    param: 'size',
    message: `${model.id} does not take 'size' (it uses ${model.sizing.style.replace('_', ' ')} sizing: see GET /v1/models); ignored.`,
  });
  return false;
}

/**
 * The default size of an edit: the input image's aspect ratio at about the model's default pixel count (pixel
 * dimension models, rounded to their multiple and kept within their bounds), or the model's aspect ratio closest to
 * the input's (aspect-ratio and resolution-tier models, at the default resolution). Preset-size models keep their
 * default (gpt-image's `auto` already follows the input). Nothing changes when no size fits the model's rules.
 */
export function matchInputShape(model: ImageCatalogModel, params: Record<string, string | number | boolean>, image: InputImage): void {
  const ratio = image.width / image.height;
  if (!(ratio > 0) || !Number.isFinite(ratio)) return;
  const { width: widthSpec, height: heightSpec } = model.params;
  if (model.sizing.style === 'pixel_dimensions' && widthSpec?.type === 'integer' && heightSpec?.type === 'integer') {
    const area = Number(params.width) * Number(params.height);
    const fit = (side: number, spec: typeof widthSpec) => {
      const step = spec.multiple_of ?? 1;
      // Rounded down, so the edit never has more pixels (and never costs more) than the default size.
      return Math.min(spec.max - (spec.max % step), Math.max(Math.ceil(spec.min / step) * step, Math.floor(side / step) * step));
    };
    const width = fit(Math.sqrt(area * ratio), widthSpec);
    const height = fit(Math.sqrt(area / ratio), heightSpec);
    try {
      checkCustomSize(model, width, height, 'width');
    } catch {
      return;
    }
    params.width = width;
    params.height = height;
    return;
  }
  const aspect = model.params.aspect_ratio;
  if ((model.sizing.style === 'aspect_ratio' || model.sizing.style === 'resolution_tier') && aspect?.type === 'string') {
    const row = model.sizing.style === 'aspect_ratio' ? '*' : String(params.resolution);
    const distance = (option: string) => {
      const [w, h] = option.split(':').map(Number);
      return Math.abs(Math.log(w / h / ratio));
    };
    const candidates = aspect.enum.filter((option) => /^\d+(\.\d+)?:\d+(\.\d+)?$/.test(option) && model.sizing.table?.[row]?.[option]);
    if (candidates.length === 0) return;
    params.aspect_ratio = candidates.reduce((best, option) => (distance(option) < distance(best) ? option : best));
  }
}

/** OpenAI's output_compression: 0-100, for jpeg and webp output only (reported back as ignored for png). */
export function readOutputCompression(
  body: Record<string, unknown>,
  format: ImageFormat,
  model: ImageCatalogModel,
  warnings: Warning[],
  coerce: boolean,
): number | undefined {
  const value = readInteger(body, 'output_compression', coerce);
  if (value === undefined) return undefined;
  if (value < 0 || value > 100) throw invalidRequest(`'output_compression' must be between 0 and 100; got ${value}.`, 'output_compression');
  if (format === 'png') {
    warnings.push({
      type: 'unsupported',
      param: 'output_compression',
      message: `'output_compression' applies to jpeg and webp output; ${model.id} returns png here, so it was ignored.`,
    });
    return undefined;
  }
  return value;
}

/** The pixel size the request resolves to, from the catalog's sizing rules. */
export function resolveOutputSize(
  model: ImageCatalogModel,
  params: Record<string, string | number | boolean>,
  given: Set<string>,
  warnings: Warning[],
): { width: number; height: number } {
  const { sizing } = model;
  const fromTable = (row: string, column: string, columnParam: string): { width: number; height: number } => {
    const cell = sizing.table?.[row]?.[column];
    if (!cell) {
      throw invalidRequest(
        row === '*'
          ? `${model.id} has no output size for ${columnParam} "${column}".`
          : `${model.id} does not offer ${columnParam} "${column}" at resolution ${row}.`,
        columnParam,
      );
    }
    return parseSize(cell);
  };

  if (sizing.style === 'pixel_dimensions') {
    const tierRequested = sizing.also_resolution_tier && (given.has('aspect_ratio') || given.has('resolution'));
    const pixelsRequested = given.has('width') || given.has('height');
    if (tierRequested && !pixelsRequested) {
      return fromTable(String(params.resolution), String(params.aspect_ratio), 'aspect_ratio');
    }
    if (tierRequested && pixelsRequested) {
      warnings.push({
        type: 'other',
        param: 'aspect_ratio',
        message: "'width'/'height' were given, so 'aspect_ratio' and 'resolution' were ignored.",
      });
    }
    const width = Number(params.width);
    const height = Number(params.height);
    checkCustomSize(model, width, height, given.has('width') ? 'width' : 'height');
    return { width, height };
  }
  if (sizing.style === 'resolution_tier') return fromTable(String(params.resolution), String(params.aspect_ratio), 'aspect_ratio');
  if (sizing.style === 'aspect_ratio') return fromTable('*', String(params.aspect_ratio), 'aspect_ratio');
  // preset_size
  const preset = String(params.image_size);
  const cell = sizing.table?.['*']?.[preset];
  if (cell) return parseSize(cell);
  const custom = /^(\d{1,5})x(\d{1,5})$/.exec(preset);
  if (custom) return { width: Number(custom[1]), height: Number(custom[2]) };
  throw invalidRequest(`${model.id} has no output size for image_size "${preset}".`, 'image_size');
}

export function checkCustomSize(model: ImageCatalogModel, width: number, height: number, param: string): void {
  const rules = model.sizing.custom_size;
  if (!rules) return;
  const pixels = width * height;
  const problem =
    width < rules.min_side || height < rules.min_side
      ? `each side must be at least ${rules.min_side} px`
      : width > rules.max_side || height > rules.max_side
        ? `each side must be at most ${rules.max_side} px`
        : width % rules.multiple_of !== 0 || height % rules.multiple_of !== 0
          ? `both sides must be multiples of ${rules.multiple_of}`
          : rules.min_pixels !== undefined && pixels < rules.min_pixels
            ? `the image must have at least ${rules.min_pixels} pixels`
            : rules.max_pixels !== undefined && pixels > rules.max_pixels
              ? `the image must have at most ${rules.max_pixels} pixels`
              : rules.max_aspect_ratio !== undefined && Math.max(width, height) / Math.min(width, height) > rules.max_aspect_ratio
                ? `the longer side may be at most ${rules.max_aspect_ratio}× the shorter`
                : undefined;
  if (problem) throw invalidRequest(`${width}x${height} is not a size ${model.id} can produce: ${problem}.`, param);
}

export function parseSize(text: string): { width: number; height: number } {
  const [width, height] = text.split('x').map(Number);
  return { width, height };
}

export function readParam(
  body: Record<string, unknown>,
  name: string,
  spec: ParamSpec,
  model: ImageCatalogModel,
  coerce: boolean,
  reportAs = name,
): string | number | boolean | undefined {
  const raw = body[name];
  if (raw === undefined || raw === null) return undefined;
  switch (spec.type) {
    case 'integer': {
      const value = toInteger(raw, coerce);
      if (value === undefined) throw invalidRequest(`'${reportAs}' must be an integer.`, reportAs, 'invalid_type');
      if (value < spec.min || value > spec.max) {
        throw invalidRequest(`'${reportAs}' must be between ${spec.min} and ${spec.max} for ${model.id}; got ${value}.`, reportAs);
      }
      if (spec.multiple_of && value % spec.multiple_of !== 0) {
        throw invalidRequest(`'${reportAs}' must be a multiple of ${spec.multiple_of} for ${model.id}; got ${value}.`, reportAs);
      }
      return value;
    }
    case 'boolean': {
      const value = toBoolean(raw, coerce);
      if (value === undefined) throw invalidRequest(`'${reportAs}' must be true or false.`, reportAs, 'invalid_type');
      return value;
    }
    case 'string': {
      if (typeof raw !== 'string') throw invalidRequest(`'${reportAs}' must be a string.`, reportAs, 'invalid_type');
      const match = spec.enum.find((option) => option === raw) ?? spec.enum.find((option) => option.toLowerCase() === raw.toLowerCase());
      if (match !== undefined) return match;
      if (spec.allow_custom_size && /^\d{1,5}x\d{1,5}$/.test(raw)) {
        const { width, height } = parseSize(raw);
        checkCustomSize(model, width, height, reportAs);
        return raw;
      }
      const shown = spec.enum.length <= 16 ? spec.enum.join(', ') : `${spec.enum.slice(0, 16).join(', ')}, …`;
      throw invalidRequest(
        `'${reportAs}' "${raw.slice(0, 40)}" is not supported by ${model.id}. Allowed: ${shown}${spec.allow_custom_size ? ', or a custom "WxH"' : ''}.`,
        reportAs,
      );
    }
  }
}
