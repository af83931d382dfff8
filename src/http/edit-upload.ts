import type { IncomingMessage } from 'node:http';
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { GatewayError, invalidRequest } from '../domain/errors.ts';
import type { InputImage } from '../domain/requests.ts';
import { checkUploadHeader } from '../images/upload-header.ts';
import type { ImageGenerationService, PreparedImageRequest } from '../services/image-generation.ts';
import type { JobService } from '../services/jobs/job-service.ts';

/**
 * The body of POST /v1/images/edits (docs/edits.md), read and validated once for the two routes that take it: the
 * edit itself (routes/edits.ts) and its quote (routes/quote.ts), so both parse, limit and refuse the same way.
 *
 * Order, so nothing is read for a request that cannot succeed: the route authenticates before a byte of the body is
 * read → declared Content-Length against the request cap (refuseDeclaredOversize) → stream the parts (per-file and
 * per-request byte caps, file type sniffed from the bytes, pixel count read from the header before anything decodes)
 * → model rules (edit support, reference-image cap) → the normal validation and price → a bounded decode check of
 * every image (ImageGenerationService.prepareEdit).
 *
 * Memory: each upload is held once. When the request declares its length (every SDK does), the files are copied
 * from the socket chunks straight into one buffer of that length, allocated when the first file starts, and each
 * image is a view of its own byte range: no per-file concatenation, no second copy. Pages of that buffer that are
 * never written (the form's text fields and boundaries) are never touched, so they cost no resident memory.
 * A chunked upload without a length falls back to collecting the file's chunks and joining them once at its end.
 */

export interface EditLimits {
  /** Largest single image file, in bytes (413 above). */
  maxFileBytes: number;
  /** Largest request body, in bytes (413 above). */
  maxRequestBytes: number;
  /** Largest image by pixel count (width × height from the header), refused with 400 before any decoding. */
  maxPixels: number;
}

/** Deepshi's API takes 1 to 14 reference images, whatever the model (docs/edits.md); each model may take fewer. */
export const MAX_EDIT_IMAGES = 14;
/** Text fields: a 32,000-character prompt is at most 128 KB of UTF-8. */
const MAX_FIELD_BYTES = 256 * 1024;
const MAX_FIELDS = 64;
/** Bytes a header probe may look at before the route gives up on an early verdict (JPEG SOF after big EXIF). */
const EARLY_PROBE_BYTES = 1024 * 1024;

/** The multipart parser with the edit limits, in an encapsulated scope (the JSON-only endpoints keep answering 415). */
export async function registerEditMultipart(scope: FastifyInstance, limits: EditLimits): Promise<void> {
  await scope.register(multipart, {
    throwFileSizeLimit: false, // readEditForm enforces (and words) its own cap
    limits: {
      fileSize: limits.maxFileBytes + 1,
      files: MAX_EDIT_IMAGES + 1,
      fields: MAX_FIELDS,
      fieldSize: MAX_FIELD_BYTES,
      parts: MAX_FIELDS + MAX_EDIT_IMAGES + 1,
      headerPairs: 20,
    },
  });
}

/** Before the body: an upload that declares more than the request cap is refused (413) without reading it. */
export function refuseDeclaredOversize(request: FastifyRequest, limits: EditLimits): void {
  const declared = declaredLength(request.raw);
  if (declared !== undefined && declared > limits.maxRequestBytes) {
    discardRest(request.raw, limits.maxRequestBytes);
    throw requestTooLarge(limits);
  }
}

export interface EditUploadDeps {
  images: ImageGenerationService;
  limits: EditLimits;
  /** Async jobs: their fields (`async`, `webhook_url`, `Prefer: respond-async`) are read and checked here too. */
  jobs?: JobService;
}

export interface PreparedEdit {
  prepared: PreparedImageRequest;
  asJob: { async: boolean; webhookUrl: string | undefined } | undefined;
}

/**
 * The whole edit request up to its price: 415 unless multipart, the form streamed and checked, the job fields taken,
 * then prepareEdit (model rules, validation, price, decode check). `onFields` sees the form's fields once they are
 * read (the edit route's metrics name the requested model even when prepareEdit refuses it).
 */
export async function prepareEditUpload(
  request: FastifyRequest,
  deps: EditUploadDeps,
  onFields?: (fields: Record<string, unknown>) => void,
): Promise<PreparedEdit> {
  if (!request.isMultipart()) {
    throw new GatewayError('Image edits are sent as multipart/form-data (model, prompt and the files under image[] or image).', {
      status: 415,
      type: 'invalid_request_error',
      code: 'unsupported_media_type',
    });
  }
  let form: EditForm;
  try {
    form = await readEditForm(request, deps.limits);
  } catch (error) {
    discardRest(request.raw, deps.limits.maxRequestBytes);
    throw multipartError(error);
  }
  const { fields, images } = form;
  onFields?.(fields);
  const asJob = deps.jobs?.takeJobFields(fields, request.headers.prefer, true);
  const prepared = await deps.images.prepareEdit(request.caller, fields, images, { maxPixels: deps.limits.maxPixels });
  return { prepared, asJob };
}

interface EditForm {
  fields: Record<string, unknown>;
  images: InputImage[];
}

/** Streams the multipart body: text fields into `fields`, image files into buffers, checking every limit as bytes arrive. */
async function readEditForm(request: FastifyRequest, limits: EditLimits): Promise<EditForm> {
  const fields: Record<string, unknown> = {};
  const images: InputImage[] = [];
  const declared = declaredLength(request.raw);
  // One buffer for every file of the request (see the module comment); allocated when the first file starts.
  let arena: Buffer | undefined;
  let arenaUsed = 0;
  let requestBytes = 0;

  for await (const part of request.parts()) {
    if (part.type === 'field') {
      const name = part.fieldname;
      if (part.fieldnameTruncated || part.valueTruncated) {
        throw invalidRequest(
          `The form field '${shortName(name)}' is longer than ${MAX_FIELD_BYTES / 1024} KB.`,
          shortName(name),
          'string_above_max_length',
        );
      }
      if (name === 'image' || name === 'image[]') {
        throw invalidRequest(
          `'${name}' must be an uploaded file (a multipart part with a filename), not a text value.`,
          'image',
          'invalid_type',
        );
      }
      if (name === 'mask')
        throw invalidRequest("'mask' is not supported: edits take a prompt and reference images only.", 'mask', 'unsupported_parameter');
      if (Object.hasOwn(fields, name))
        throw invalidRequest(`The form field '${shortName(name)}' was sent more than once.`, shortName(name), 'duplicate_parameter');
      requestBytes += typeof part.value === 'string' ? Buffer.byteLength(part.value) : 0;
      if (requestBytes > limits.maxRequestBytes) throw requestTooLarge(limits);
      fields[name] = part.value;
      continue;
    }

    const name = part.fieldname;
    if (name === 'mask')
      throw invalidRequest("'mask' is not supported: edits take a prompt and reference images only.", 'mask', 'unsupported_parameter');
    if (name !== 'image' && name !== 'image[]') {
      throw invalidRequest(
        `Unexpected file field '${shortName(name)}'. Send reference images under image[] (or image).`,
        shortName(name),
        'unknown_parameter',
      );
    }
    if (images.length >= MAX_EDIT_IMAGES) {
      throw invalidRequest(
        `At most ${MAX_EDIT_IMAGES} reference images can be sent; the model's own cap is in the edit block of GET /v1/models.`,
        'image',
        'too_many_images',
      );
    }
    const ordinal = images.length + 1;
    if (declared !== undefined) arena ??= Buffer.allocUnsafeSlow(declared);
    const sink: FileSink = arena !== undefined ? arenaSink(arena, arenaUsed) : chunkSink();
    let size = 0;
    let header: { format: 'png' | 'jpeg' | 'webp'; width: number; height: number } | undefined;
    for await (const chunk of part.file as AsyncIterable<Buffer>) {
      size += chunk.length;
      requestBytes += chunk.length;
      if (size > limits.maxFileBytes) throw fileTooLarge(limits, ordinal);
      if (requestBytes > limits.maxRequestBytes) throw requestTooLarge(limits);
      sink.write(chunk);
      // Decide as early as the bytes allow, so a wrong type or a decompression bomb is refused without reading it all.
      if (header === undefined && size <= EARLY_PROBE_BYTES)
        header = checkUploadHeader(sink.prefix(EARLY_PROBE_BYTES), limits.maxPixels, ordinal, false);
    }
    const bytes = sink.finish();
    if (sink.kind === 'arena') arenaUsed += bytes.length;
    if (size === 0) throw invalidRequest(`Image ${ordinal} is empty.`, 'image', 'invalid_image');
    header ??= checkUploadHeader(bytes, limits.maxPixels, ordinal, true);
    images.push({
      bytes,
      mediaType: `image/${header!.format}`,
      width: header!.width,
      height: header!.height,
      ...(part.filename ? { filename: part.filename.slice(0, 200) } : {}),
    });
  }
  return { fields, images };
}

interface FileSink {
  kind: 'arena' | 'chunks';
  write(chunk: Buffer): void;
  /** The bytes so far, contiguous, up to `max` (a view in arena mode; only used while the file is small). */
  prefix(max: number): Buffer;
  finish(): Buffer;
}

/** Writes into the request's buffer from `start`; the file is the view [start, start + length). */
function arenaSink(arena: Buffer, start: number): FileSink {
  let used = start;
  return {
    kind: 'arena',
    write(chunk) {
      // Node's parser never delivers more than Content-Length bytes; guard anyway.
      if (used + chunk.length > arena.length)
        throw invalidRequest('The request body is longer than its Content-Length.', null, 'invalid_body');
      chunk.copy(arena, used);
      used += chunk.length;
    },
    prefix: (max) => arena.subarray(start, Math.min(used, start + max)),
    finish: () => arena.subarray(start, used),
  };
}

/** Without a declared length: keep the chunks and join them once when the file ends. */
function chunkSink(): FileSink {
  const chunks: Buffer[] = [];
  let length = 0;
  return {
    kind: 'chunks',
    write(chunk) {
      chunks.push(chunk);
      length += chunk.length;
    },
    prefix(max) {
      if (chunks.length > 1 && length <= max) chunks.splice(0, chunks.length, Buffer.concat(chunks, length));
      return chunks[0] ?? Buffer.alloc(0);
    },
    finish: () => (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length)),
  };
}

/**
 * For an answer given before the body was read to its end: stop parsing and read the rest into nothing. The answer
 * goes out at once; a client still uploading gets to finish its write and read it (closing the socket under a
 * client that is still writing makes it see a reset instead of the answer), and the connection stays usable.
 * A client that sends more than another `limit` bytes is cut off.
 */
function discardRest(raw: IncomingMessage, maxRequestBytes: number): void {
  raw.unpipe();
  if (raw.readableEnded || raw.destroyed) return;
  let discarded = 0;
  raw.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > maxRequestBytes) raw.destroy();
  });
  raw.resume();
}

function declaredLength(raw: IncomingMessage): number | undefined {
  const header = raw.headers['content-length'];
  if (header === undefined || !/^\d{1,15}$/.test(header)) return undefined;
  return Number(header);
}

function multipartError(error: unknown): unknown {
  if (error instanceof GatewayError) return error;
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : '';
  switch (code) {
    case 'FST_FILES_LIMIT':
      return invalidRequest(`At most ${MAX_EDIT_IMAGES} reference images can be sent.`, 'image', 'too_many_images');
    case 'FST_FIELDS_LIMIT':
    case 'FST_PARTS_LIMIT':
      return new GatewayError(`The form has too many parts; at most ${MAX_FIELDS} fields and ${MAX_EDIT_IMAGES} images.`, {
        status: 413,
        type: 'invalid_request_error',
        code: 'request_too_large',
      });
    case 'FST_PROTO_VIOLATION':
      return invalidRequest('A form field name is not allowed.', null, 'invalid_body');
    case 'FST_INVALID_JSON_FIELD_ERROR':
      return invalidRequest('A form field declared as application/json is not valid JSON.', null, 'invalid_body');
    case 'FST_MP_PREMATURE_CLOSE':
      return new GatewayError('The upload ended before the form was complete.', {
        status: 400,
        type: 'invalid_request_error',
        code: 'invalid_body',
      });
  }
  if (/multipart|boundary|terminated early|Unexpected end/i.test(message)) {
    return invalidRequest(`The multipart/form-data body could not be parsed: ${message.slice(0, 120)}.`, null, 'invalid_body');
  }
  return error;
}

function fileTooLarge(limits: EditLimits, ordinal: number): GatewayError {
  return new GatewayError(`Image ${ordinal} is larger than ${formatBytes(limits.maxFileBytes)}, the largest file this server accepts.`, {
    status: 413,
    type: 'invalid_request_error',
    code: 'file_too_large',
    param: 'image',
  });
}

function requestTooLarge(limits: EditLimits): GatewayError {
  return new GatewayError(
    `The upload is larger than ${formatBytes(limits.maxRequestBytes)}, the largest edit request this server accepts.`,
    {
      status: 413,
      type: 'invalid_request_error',
      code: 'request_too_large',
      param: 'image',
    },
  );
}

function formatBytes(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} bytes`;
}

function shortName(name: string): string {
  return name.length > 64 ? `${name.slice(0, 64)}…` : name;
}
