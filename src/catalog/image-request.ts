import { readBoolean, readEnum, readInteger, toBoolean, toInteger } from './body-fields.ts';
import { invalidRequest, missingParam } from '../domain/errors.ts';
import type { Warning } from '../domain/warnings.ts';
import type { ImageFormat, InputImage, NormalizedImageRequest } from '../domain/requests.ts';
import type { ImageCatalogModel } from './catalog.ts';
import type { ParamSpec } from './schema.ts';

/**
 * Validates a caller's image request against what the chosen model declares and normalises it.
 * Rules (the spec's and Deepshi's docs'):
 * - standard fields are validated everywhere; a value the model does not allow is a 400 naming the param;
 * - a model-specific field the model does not declare is ignored and reported back as a warning;
 * - any other unknown field is forwarded to the model in `extra`.
 */

/** Fields defined by the API itself (never forwarded as extras). */
const STANDARD_FIELDS = new Set([
  'model',
  'prompt',
  'n',
  'response_format',
  'output_format',
  'stream',
  'seed',
  'partial_images',
  'size',
  'user',
  'image',
  'image[]',
]);
/** Sizing fields the spec names: ignored with a warning when the model does not declare them. */
const SIZING_FIELDS = ['width', 'height', 'aspect_ratio', 'resolution', 'image_size'];
/**
 * OpenAI Images request fields (openai-node's ImageGenerateParams and ImageEditParams) that a model honours only when
 * its catalog entry declares them: otherwise ignored and reported back (never forwarded under their OpenAI name to an
 * upstream that would read them differently). `auto` asks the model to decide, which is what happens, so it is
 * no warning. `size`, `output_format` and `output_compression` have rules of their own below.
 */
const OPENAI_MODEL_FIELDS = [
  'quality',
  'background',
  'moderation',
  'style',
  'input_fidelity',
  'complexity',
  'frame_count',
  'frame_duration_ms',
  'svg',
  'user',
  'safety_identifier',
];
/** Fields the request path reads itself: never forwarded as extras. */
const HANDLED_FIELDS = new Set([...SIZING_FIELDS, ...OPENAI_MODEL_FIELDS, 'output_compression']);

export interface ImageRequestEnvelope {
  request: NormalizedImageRequest;
  responseFormat: 'b64_json' | 'url';
  stream: boolean;
  warnings: Warning[];
}

export interface NormalizeOptions {
  /** Multipart forms carry every value as a string; accept "2" for 2 and "true" for true. */
  coerceStrings?: boolean;
  inputImages?: InputImage[];
}

const MAX_SEED = 2 ** 32 - 1;

export function normalizeImageRequest(
  body: Record<string, unknown>,
  model: ImageCatalogModel,
  options: NormalizeOptions = {},
): ImageRequestEnvelope {
  const warnings: Warning[] = [];
  const coerce = options.coerceStrings ?? false;

  const prompt = body.prompt;
  if (prompt === undefined || prompt === null) throw missingParam('prompt');
  if (typeof prompt !== 'string') throw invalidRequest("'prompt' must be a string.", 'prompt', 'invalid_type');
  if (prompt.trim() === '') throw invalidRequest("'prompt' must not be empty.", 'prompt', 'invalid_value');
  if (prompt.length > model.prompt_max_length) {
    throw invalidRequest(
      `'prompt' is ${prompt.length} characters long; ${model.id} accepts at most ${model.prompt_max_length}.`,
      'prompt',
      'string_above_max_length',
    );
  }

  const n = readInteger(body, 'n', coerce) ?? 1;
  if (n < 1 || n > 4) throw invalidRequest(`'n' must be between 1 and 4; got ${n}.`, 'n');
  if (n > model.max_n)
    throw invalidRequest(
      `${model.id} generates at most ${model.max_n} image${model.max_n === 1 ? '' : 's'} per request ('n' ≤ ${model.max_n}); got ${n}.`,
      'n',
    );

  const responseFormat = readEnum(body, 'response_format', ['b64_json', 'url'] as const, coerce) ?? 'b64_json';
  // `jpg` is accepted as another name for jpeg (the response then says "jpeg").
  const outputFormat = readEnum(body, 'output_format', ['png', 'jpeg', 'webp'] as const, coerce, { jpg: 'jpeg' });
  if (outputFormat !== undefined && !model.output_formats.includes(outputFormat)) {
    throw invalidRequest(
      `${model.id} can return ${model.output_formats.join(', ')}; 'output_format' ${outputFormat} is not available.`,
      'output_format',
    );
  }
  const outputCompression = readOutputCompression(body, outputFormat ?? model.native_output_format, model, warnings, coerce);
  const stream = readBoolean(body, 'stream', coerce) ?? false;

  let seed = readInteger(body, 'seed', coerce);
  if (seed !== undefined && (seed < 0 || seed > MAX_SEED)) throw invalidRequest(`'seed' must be between 0 and ${MAX_SEED}.`, 'seed');
  if (seed !== undefined && !model.seed) {
    warnings.push({ type: 'unsupported', param: 'seed', message: `${model.id} does not support seeds; 'seed' was ignored.` });
    seed = undefined;
  }

  let partialImages = readInteger(body, 'partial_images', coerce) ?? 0;
  if (partialImages < 0 || partialImages > 3) throw invalidRequest("'partial_images' must be between 0 and 3.", 'partial_images');
  if (!stream && partialImages > 0) {
    warnings.push({ type: 'other', param: 'partial_images', message: "'partial_images' applies only with 'stream': true; ignored." });
    partialImages = 0;
  } else if (partialImages > model.max_partial_images) {
    warnings.push({
      type: 'unsupported',
      param: 'partial_images',
      message:
        model.max_partial_images === 0
          ? `${model.id} does not produce partial images; only the final image is streamed.`
          : `${model.id} produces at most ${model.max_partial_images} partial images.`,
    });
    partialImages = model.max_partial_images;
  }

  // Model-specific parameters declared in the catalog: validated, defaults applied.
  const params: Record<string, string | number | boolean> = {};
  const given = new Set<string>();
  for (const [name, spec] of Object.entries(model.params)) {
    const value = readParam(body, name, spec, model, coerce);
    if (value !== undefined) {
      params[name] = value;
      given.add(name);
    } else if (spec.default !== undefined) {
      params[name] = spec.default;
    }
  }
  // OpenAI's `size` is the SDKs' sizing field: map it onto the model's own sizing style when we can.
  const sizeGiven = applyOpenAiSize(body, model, params, given, warnings, coerce);
  // An edit with no size asked for keeps its (first) input image's shape, where the model's sizing can.
  const inputImage = options.inputImages?.[0];
  if (inputImage && !sizeGiven && !SIZING_FIELDS.some((field) => given.has(field))) matchInputShape(model, params, inputImage);

  for (const field of SIZING_FIELDS) {
    if (body[field] !== undefined && body[field] !== null && !(field in model.params)) {
      warnings.push({
        type: 'unsupported',
        param: field,
        message: `${model.id} does not support '${field}' (it uses ${model.sizing.style.replace('_', ' ')} sizing); ignored.`,
      });
    }
  }
  for (const field of OPENAI_MODEL_FIELDS) {
    const value = body[field];
    if (value === undefined || value === null || value === 'auto' || field in model.params) continue;
    warnings.push({ type: 'unsupported', param: field, message: `${model.id} does not support '${field}'; ignored.` });
  }

  const extra: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    if (STANDARD_FIELDS.has(key) || HANDLED_FIELDS.has(key) || key in model.params) continue;
    extra[key] = value;
  }

  const { width, height } = resolveOutputSize(model, params, given, warnings);

  return {
    request: {
      model: model.id,
      prompt,
      n,
      seed,
      width,
      height,
      params,
      outputFormat,
      ...(outputCompression !== undefined ? { outputCompression } : {}),
      partialImages: stream ? partialImages : 0,
      extra,
      inputImages: options.inputImages ?? [],
    },
    responseFormat,
    stream,
    warnings,
  };
}

/**
 * Maps OpenAI's `size` onto the model's sizing; true when it set a size. `auto` (an SDK value) is the model's own
 * choice where its image_size offers one (gpt-image), and its default size everywhere else.
 */
function applyOpenAiSize(
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
function matchInputShape(model: ImageCatalogModel, params: Record<string, string | number | boolean>, image: InputImage): void {
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
function readOutputCompression(
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
function resolveOutputSize(
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

function checkCustomSize(model: ImageCatalogModel, width: number, height: number, param: string): void {
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

function readParam(
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

export type { ImageFormat };
