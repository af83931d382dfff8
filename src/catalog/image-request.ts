import { readBoolean, readEnum, readInteger } from './body-fields.ts';
import { invalidRequest, missingParam } from '../domain/errors.ts';
import type { Warning } from '../domain/warnings.ts';
import type { ImageFormat, InputImage, NormalizedImageRequest } from '../domain/requests.ts';
import type { ImageCatalogModel } from './catalog.ts';
import { applyOpenAiSize, matchInputShape, readOutputCompression, readParam, resolveOutputSize } from './image-request-fields.ts';

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

export type { ImageFormat };
export { parseSize } from './image-request-fields.ts';
