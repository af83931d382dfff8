import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { renderSketch } from '../../src/images/sketch.ts';

/**
 * A local OpenAI Images API (research/providers.md §1), test code only. It validates like OpenAI (sizes per model,
 * gpt-image-2's custom-size rules, enums, n 1-10, `response_format` refused for GPT image models, unknown fields
 * refused), answers base64 images rendered at the asked size and format, reports token usage from the tables in
 * providers.md, streams SSE partial images, refuses prompts containing "forbidden", and plays fault switches.
 * Every request is recorded (method, path, headers, parsed JSON or multipart body) before it is answered.
 *
 * Token rules (the [I]/[R] parts of providers.md made concrete):
 * - input text tokens: ceil(prompt characters / 4) [R]; input image tokens: 765 per reference image [R];
 * - output image tokens per image: the providers.md table for the model, quality and size (`auto` quality =
 *   medium, `auto` size = 1024x1024); gpt-image-2 custom sizes scale the 1024x1024 count by pixels, rounded up;
 * - each streamed partial image adds 100 output image tokens [R].
 */

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** Parsed JSON; for multipart, `{ fields, files }`; else the text. */
  body: any;
}

export interface RecordedFile {
  field: string;
  filename: string;
  type: string;
  bytes: Buffer;
}

export type Fault =
  | { kind: 'status500' }
  | { kind: 'rate429'; retryAfter: string }
  | { kind: 'hang' }
  | { kind: 'reset' }
  | { kind: 'malformed' }
  /** HTTP 200 streaming `bytes` of JSON-looking padding, no content-length. */
  | { kind: 'oversized'; bytes: number }
  | { kind: 'unauthorized' }
  | { kind: 'empty' }
  /** One image fewer than asked. */
  | { kind: 'fewer' }
  /** Replace `usage` in the answer. */
  | { kind: 'usage'; usage: unknown }
  /** A stream that sends one partial image, then an error event. */
  | { kind: 'stream-error'; code?: string }
  /** A stream that ends without a completed event. */
  | { kind: 'stream-cut' }
  /** A result URL instead of base64 (compatible simulator only). */
  | { kind: 'url'; url: string };

export interface SimulatorHandle {
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** Every base64 image the simulator sent (partials excluded), in order. */
  sentImages: string[];
  /** Every usage object the simulator sent, in order. */
  sentUsages: any[];
  /** Active until cleared; `times` limits how many requests it affects. */
  setFault(fault: Fault | undefined, times?: number): void;
  /** Stream option: end each stream with `data: [DONE]`. */
  sendDone: boolean;
  reset(): void;
  close(): Promise<void>;
}

export interface SimulatorContext {
  handle: SimulatorHandle;
  /** Returns the active fault and consumes one use of it. */
  takeFault(): Fault | undefined;
}

export type SimulatorHandler = (request: RecordedRequest, response: ServerResponse, context: SimulatorContext) => Promise<void>;

/** The HTTP plumbing both OpenAI-style simulators share. */
export async function startSimulatorServer(handler: SimulatorHandler): Promise<SimulatorHandle> {
  let fault: Fault | undefined;
  let faultUses = Infinity;
  const server = http.createServer(async (raw, response) => {
    const recorded = await readRequest(raw);
    handle.requests.push(recorded);
    try {
      await handler(recorded, response, context);
    } catch (error) {
      if (!response.headersSent)
        sendJson(response, 500, {
          error: { message: `simulator error: ${(error as Error).message}`, type: 'server_error', param: null, code: null },
        });
      else response.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const handle: SimulatorHandle = {
    url: `http://127.0.0.1:${port}`,
    port,
    requests: [],
    sentImages: [],
    sentUsages: [],
    sendDone: false,
    setFault(next, times = Infinity) {
      fault = next;
      faultUses = times;
    },
    reset() {
      handle.requests.length = 0;
      handle.sentImages.length = 0;
      handle.sentUsages.length = 0;
      handle.sendDone = false;
      fault = undefined;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const context: SimulatorContext = {
    handle,
    takeFault() {
      if (!fault || faultUses <= 0) return undefined;
      faultUses--;
      return fault;
    },
  };
  return handle;
}

async function readRequest(raw: IncomingMessage): Promise<RecordedRequest> {
  const chunks: Buffer[] = [];
  for await (const chunk of raw) chunks.push(chunk as Buffer);
  const bytes = Buffer.concat(chunks);
  const type = raw.headers['content-type'] ?? '';
  let body: any = bytes.toString('utf8');
  if (type.startsWith('multipart/form-data')) {
    const form = await new Request('http://simulator/', { method: 'POST', headers: { 'content-type': type }, body: bytes }).formData();
    const fields: Record<string, string> = {};
    const files: RecordedFile[] = [];
    for (const [name, value] of form.entries()) {
      if (typeof value === 'string') fields[name] = value;
      else files.push({ field: name, filename: value.name, type: value.type, bytes: Buffer.from(await value.arrayBuffer()) });
    }
    body = { fields, files };
  } else if (type.startsWith('application/json')) {
    try {
      body = JSON.parse(body);
    } catch {
      // kept as text; the handler answers 400
    }
  }
  return { method: raw.method ?? 'GET', path: raw.url ?? '/', headers: raw.headers, body };
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
  response.end(text);
}

export function apiError(
  response: ServerResponse,
  status: number,
  error: { message: string; type: string; param?: string | null; code?: string | null; [more: string]: unknown },
  headers: Record<string, string> = {},
): void {
  sendJson(response, status, { error: { param: null, code: null, ...error } }, headers);
}

/** Plays the transport and status faults both simulators share; true when the fault answered the request. */
export function playCommonFault(fault: Fault | undefined, response: ServerResponse): boolean {
  switch (fault?.kind) {
    case 'status500':
      apiError(response, 500, {
        message: 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
      });
      return true;
    case 'rate429':
      apiError(
        response,
        429,
        { message: 'Rate limit reached for images per minute. Please try again in 1s.', type: 'requests', code: 'rate_limit_exceeded' },
        { 'retry-after': fault.retryAfter },
      );
      return true;
    case 'hang':
      return true;
    case 'reset':
      response.socket?.destroy();
      return true;
    case 'malformed':
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"created": 1767000000, "data": [{"b64_json": "iVBOR');
      return true;
    case 'oversized': {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.write('{"created":1767000000,"data":[{"b64_json":"');
      const block = 'A'.repeat(64 * 1024);
      let left = fault.bytes;
      const pump = () => {
        while (left > 0 && !response.destroyed) {
          left -= block.length;
          if (!response.write(block)) return void response.once('drain', pump);
        }
        if (!response.destroyed) response.end('"}]}');
      };
      pump();
      return true;
    }
    case 'unauthorized':
      apiError(response, 401, {
        message: 'Incorrect API key provided: sk-wr***ey.',
        type: 'invalid_request_error',
        code: 'invalid_api_key',
      });
      return true;
    default:
      return false;
  }
}

// ------------------------------------------------------------------------------------------------------------
// OpenAI
// ------------------------------------------------------------------------------------------------------------

const MODELS = ['gpt-image-1', 'gpt-image-1-mini', 'gpt-image-1.5', 'gpt-image-2'];
const STANDARD_SIZES = ['1024x1024', '1536x1024', '1024x1536'];
const GENERATION_FIELDS = [
  'prompt',
  'model',
  'n',
  'size',
  'quality',
  'output_format',
  'output_compression',
  'background',
  'moderation',
  'stream',
  'partial_images',
  'user',
];
const EDIT_FIELDS = [
  'prompt',
  'model',
  'n',
  'size',
  'quality',
  'output_format',
  'output_compression',
  'background',
  'stream',
  'partial_images',
  'user',
  'input_fidelity',
];

/** Output image tokens per image [I, providers.md]: gpt-image-1 / 1.5 share a table; gpt-image-2 has its own. */
const OUTPUT_TOKENS: Record<string, Record<string, Record<string, number>>> = {
  'gpt-image-1.5': {
    low: { '1024x1024': 272, '1024x1536': 408, '1536x1024': 400 },
    medium: { '1024x1024': 1056, '1024x1536': 1584, '1536x1024': 1568 },
    high: { '1024x1024': 4160, '1024x1536': 6240, '1536x1024': 6208 },
  },
  'gpt-image-2': {
    low: { '1024x1024': 200, '1024x1536': 170, '1536x1024': 170 },
    medium: { '1024x1024': 1770, '1024x1536': 1370, '1536x1024': 1370 },
    high: { '1024x1024': 7024, '1024x1536': 5488, '1536x1024': 5488 },
  },
};
OUTPUT_TOKENS['gpt-image-1'] = OUTPUT_TOKENS['gpt-image-1.5'];
OUTPUT_TOKENS['gpt-image-1-mini'] = OUTPUT_TOKENS['gpt-image-1.5'];

export const TOKENS_PER_REFERENCE_IMAGE = 765;
export const TOKENS_PER_PARTIAL_IMAGE = 100;

export function outputTokensFor(model: string, quality: string, size: string): number {
  const table = OUTPUT_TOKENS[model][quality === 'auto' ? 'medium' : quality];
  if (table[size] !== undefined) return table[size];
  const [width, height] = size.split('x').map(Number);
  return Math.ceil((table['1024x1024'] * width * height) / (1024 * 1024));
}

class Invalid extends Error {
  constructor(
    readonly param: string,
    message: string,
    readonly code: string = 'invalid_value',
  ) {
    super(message);
  }
}

/** The settings a request resolves to, after OpenAI-style validation. */
interface Resolved {
  model: string;
  prompt: string;
  n: number;
  size: string;
  quality: string;
  background: string;
  outputFormat: 'png' | 'jpeg' | 'webp';
  stream: boolean;
  partialImages: number;
  references: RecordedFile[];
}

function validate(request: RecordedRequest, edit: boolean): Resolved {
  let fields: Record<string, unknown>;
  let references: RecordedFile[] = [];
  if (edit) {
    if (typeof request.body !== 'object' || !request.body.fields)
      throw new Invalid('image', 'The edit endpoint takes multipart/form-data.');
    const raw = request.body.fields as Record<string, string>;
    fields = { ...raw };
    for (const name of ['n', 'partial_images', 'output_compression']) if (raw[name] !== undefined) fields[name] = Number(raw[name]);
    if (raw.stream !== undefined) fields.stream = raw.stream === 'true';
    references = (request.body.files as RecordedFile[]).filter((file) => file.field === 'image[]' || file.field === 'image');
    if (references.length === 0) throw new Invalid('image', "Missing required parameter: 'image'.", 'missing_required_parameter');
    if (references.length > 16) throw new Invalid('image', 'At most 16 images can be edited at once.');
    for (const file of references) {
      if (!['image/png', 'image/jpeg', 'image/webp'].includes(file.type))
        throw new Invalid('image', `Invalid image file type: ${file.type}. Supported: png, jpeg, webp.`);
    }
  } else {
    if (request.body === null || typeof request.body !== 'object')
      throw new Invalid('body', 'We could not parse the JSON body of your request.', 'invalid_json');
    fields = request.body;
  }
  for (const name of Object.keys(fields)) {
    if (!(edit ? EDIT_FIELDS : GENERATION_FIELDS).includes(name))
      throw new Invalid(name, `Unknown parameter: '${name}'.`, 'unknown_parameter');
  }
  const model = typeof fields.model === 'string' ? fields.model : edit ? 'gpt-image-1.5' : 'dall-e-2';
  if (!MODELS.includes(model)) throw new Invalid('model', `Invalid value: '${model}'. This simulator serves ${MODELS.join(', ')}.`);
  const prompt = fields.prompt;
  if (typeof prompt !== 'string' || prompt === '')
    throw new Invalid('prompt', "Missing required parameter: 'prompt'.", 'missing_required_parameter');
  if (prompt.length > 32_000)
    throw new Invalid(
      'prompt',
      `Invalid 'prompt': string too long. Expected a string with maximum length 32000, but got a string with length ${prompt.length} instead.`,
      'string_above_max_length',
    );
  const n = fields.n ?? 1;
  if (typeof n !== 'number' || !Number.isInteger(n)) throw new Invalid('n', "Invalid type for 'n': expected an integer.", 'invalid_type');
  if (n < 1 || n > 10)
    throw new Invalid(
      'n',
      `Invalid 'n': integer ${n < 1 ? 'below minimum' : 'above maximum'} value. Expected a value between 1 and 10, but got ${n} instead.`,
      n < 1 ? 'integer_below_min_value' : 'integer_above_max_value',
    );
  const size = String(fields.size ?? 'auto');
  if (size !== 'auto' && !STANDARD_SIZES.includes(size) && !(model === 'gpt-image-2' && customSizeOk(size))) {
    throw new Invalid(
      'size',
      `Invalid value: '${size}'. Supported values are: 'auto', ${STANDARD_SIZES.map((s) => `'${s}'`).join(', ')}${model === 'gpt-image-2' ? ', or WxH with both sides multiples of 16, ratio at most 3:1 and at most 3840x2160' : ''}.`,
    );
  }
  const quality = enumField(fields, 'quality', ['low', 'medium', 'high', 'auto'], 'auto');
  const background = enumField(fields, 'background', ['transparent', 'opaque', 'auto'], 'auto');
  const outputFormat = enumField(fields, 'output_format', ['png', 'jpeg', 'webp'], 'png') as Resolved['outputFormat'];
  enumField(fields, 'moderation', ['low', 'auto'], 'auto');
  enumField(fields, 'input_fidelity', ['low', 'high'], 'low');
  if (background === 'transparent' && outputFormat === 'jpeg')
    throw new Invalid('background', "Transparent background requires output_format 'png' or 'webp'.");
  const compression = fields.output_compression;
  if (
    compression !== undefined &&
    (typeof compression !== 'number' || !Number.isInteger(compression) || compression < 0 || compression > 100)
  ) {
    throw new Invalid('output_compression', "Invalid 'output_compression': expected an integer between 0 and 100.");
  }
  const stream = fields.stream === true;
  const partialImages = fields.partial_images ?? 0;
  if (typeof partialImages !== 'number' || !Number.isInteger(partialImages) || partialImages < 0 || partialImages > 3) {
    throw new Invalid('partial_images', "Invalid 'partial_images': expected an integer between 0 and 3.");
  }
  return {
    model,
    prompt,
    n,
    quality,
    background,
    outputFormat,
    stream,
    partialImages,
    references,
    size: size === 'auto' ? '1024x1024' : size,
  };
}

function enumField(fields: Record<string, unknown>, name: string, allowed: string[], fallback: string): string {
  const value = fields[name] ?? fallback;
  if (typeof value !== 'string' || !allowed.includes(value)) {
    throw new Invalid(name, `Invalid value: '${String(value)}'. Supported values are: ${allowed.map((v) => `'${v}'`).join(', ')}.`);
  }
  return value;
}

/** gpt-image-2: sides multiples of 16, ratio ≤ 3:1, longest edge ≤ 3840, 655,360 to 8,294,400 pixels. */
function customSizeOk(size: string): boolean {
  const match = /^(\d+)x(\d+)$/.exec(size);
  if (!match) return false;
  const [width, height] = [Number(match[1]), Number(match[2])];
  const pixels = width * height;
  return (
    width % 16 === 0 &&
    height % 16 === 0 &&
    Math.max(width, height) / Math.min(width, height) <= 3 &&
    Math.max(width, height) <= 3840 &&
    pixels >= 655_360 &&
    pixels <= 8_294_400
  );
}

function refusal(prompt: string): { code: string; body: Record<string, unknown> } | undefined {
  if (prompt.includes('legacy-forbidden')) {
    return {
      code: 'content_policy_violation',
      body: {
        message:
          'Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.',
        type: 'invalid_request_error',
        code: 'content_policy_violation',
      },
    };
  }
  if (!prompt.includes('forbidden')) return undefined;
  const stage = prompt.includes('forbidden-output') ? 'output' : 'input';
  return {
    code: 'moderation_blocked',
    body: {
      message:
        'Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID req_0123. safety_violations=[violence].',
      type: 'image_generation_user_error',
      code: 'moderation_blocked',
      moderation_details: { moderation_stage: stage, categories: ['violence'] },
    },
  };
}

let renderSeed = 0;

async function render(resolved: Resolved, progress = 1): Promise<string> {
  const [width, height] = resolved.size.split('x').map(Number);
  const reference = resolved.references[0] ? { bytes: resolved.references[0].bytes } : undefined;
  const bytes = await renderSketch({
    prompt: resolved.prompt,
    seed: renderSeed++,
    width,
    height,
    format: resolved.outputFormat,
    progress,
    reference,
  });
  return bytes.toString('base64');
}

function usageFor(resolved: Resolved, images: number, withDetails: boolean): Record<string, unknown> {
  const textTokens = Math.max(1, Math.ceil(resolved.prompt.length / 4));
  const imageTokens = resolved.references.length * TOKENS_PER_REFERENCE_IMAGE;
  const perImage =
    outputTokensFor(resolved.model, resolved.quality, resolved.size) +
    (resolved.stream ? resolved.partialImages * TOKENS_PER_PARTIAL_IMAGE : 0);
  const output = perImage * images;
  const usage: Record<string, unknown> = {
    input_tokens: textTokens + imageTokens,
    input_tokens_details: { text_tokens: textTokens, image_tokens: imageTokens },
    output_tokens: output,
    total_tokens: textTokens + imageTokens + output,
  };
  if (withDetails) usage.output_tokens_details = { image_tokens: output, text_tokens: 0 };
  return usage;
}

export async function startOpenAiSimulator(options: { apiKey?: string } = {}): Promise<SimulatorHandle> {
  const apiKey = options.apiKey ?? 'sk-sim';
  return startSimulatorServer(async (request, response, context) => {
    const edit = request.path === '/v1/images/edits';
    if (request.method !== 'POST' || (!edit && request.path !== '/v1/images/generations')) {
      return apiError(response, 404, { message: `Invalid URL (${request.method} ${request.path})`, type: 'invalid_request_error' });
    }
    const fault = context.takeFault();
    if (playCommonFault(fault, response)) return;
    if (request.headers.authorization !== `Bearer ${apiKey}`) {
      return apiError(response, 401, { message: 'Incorrect API key provided.', type: 'invalid_request_error', code: 'invalid_api_key' });
    }
    // Checked before anything else, as OpenAI does for GPT image models: base64 is the only answer they give.
    if (!edit && request.body && typeof request.body === 'object' && 'response_format' in request.body) {
      return apiError(response, 400, {
        message: "Unknown parameter: 'response_format'.",
        type: 'invalid_request_error',
        param: 'response_format',
        code: 'unknown_parameter',
      });
    }
    let resolved: Resolved;
    try {
      resolved = validate(request, edit);
    } catch (error) {
      if (!(error instanceof Invalid)) throw error;
      return apiError(response, 400, { message: error.message, type: 'invalid_request_error', param: error.param, code: error.code });
    }
    const refused = refusal(resolved.prompt);
    if (refused) return apiError(response, 400, refused.body as never);

    const created = Math.floor(Date.now() / 1000);
    const meta = {
      background: resolved.background === 'auto' ? 'opaque' : resolved.background,
      output_format: resolved.outputFormat,
      quality: resolved.quality === 'auto' ? 'medium' : resolved.quality,
      size: resolved.size,
    };
    if (resolved.stream) return stream(resolved, response, context, fault, edit, meta);

    const count = fault?.kind === 'empty' ? 0 : fault?.kind === 'fewer' ? resolved.n - 1 : resolved.n;
    const data: Array<{ b64_json: string }> = [];
    for (let index = 0; index < count; index++) {
      const base64 = await render(resolved);
      context.handle.sentImages.push(base64);
      data.push({ b64_json: base64 });
    }
    const usage = fault?.kind === 'usage' ? fault.usage : usageFor(resolved, resolved.n, true);
    context.handle.sentUsages.push(usage);
    sendJson(response, 200, { created, ...meta, data, usage });
  });
}

async function stream(
  resolved: Resolved,
  response: ServerResponse,
  context: SimulatorContext,
  fault: Fault | undefined,
  edit: boolean,
  meta: Record<string, unknown>,
): Promise<void> {
  const prefix = edit ? 'image_edit' : 'image_generation';
  response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const send = (type: string, payload: Record<string, unknown>) =>
    response.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...payload })}\n\n`);
  const created_at = Math.floor(Date.now() / 1000);
  for (let image = 0; image < resolved.n; image++) {
    for (let partial = 0; partial < resolved.partialImages; partial++) {
      send(`${prefix}.partial_image`, {
        partial_image_index: partial,
        b64_json: await render(resolved, (partial + 1) / (resolved.partialImages + 1)),
        created_at,
        ...meta,
      });
      if (fault?.kind === 'stream-error') {
        response.write(
          `event: error\ndata: ${JSON.stringify({ type: 'error', error: { message: 'The image generation failed.', type: 'server_error', code: fault.code ?? 'generation_failed', param: null } })}\n\n`,
        );
        return void response.end();
      }
      if (fault?.kind === 'stream-cut') return void response.end();
    }
    const base64 = await render(resolved);
    context.handle.sentImages.push(base64);
    const usage = fault?.kind === 'usage' ? fault.usage : usageFor({ ...resolved }, 1, false);
    context.handle.sentUsages.push(usage);
    send(`${prefix}.completed`, { b64_json: base64, created_at, ...meta, usage });
  }
  if (context.handle.sendDone) response.write('data: [DONE]\n\n');
  response.end();
}
