import { renderSketch } from '../../src/images/sketch.ts';
import { apiError, playCommonFault, sendJson, startSimulatorServer, type RecordedFile, type SimulatorHandle } from './openai-simulator.ts';

/**
 * A generic OpenAI-compatible image server (a self-hosted GPU server or another gateway), test code only.
 * Lenient like such servers: it takes OpenAI's fields plus width/height/seed/aspect_ratio/... and ignores what it
 * does not know, but it checks the types of what it reads. It answers `b64_json` (or `url` items, served from
 * its own origin under /files/, when asked with `response_format: url` or `deliver: 'url'`), `revised_prompt`
 * when `revisePrompts` is on, and `usage` {input_tokens, output_tokens, total_tokens} plus `usage.cost` (USD)
 * when `cost` is set. A prompt containing "forbidden" is refused with 400 content_policy_violation.
 */
export interface CompatibleSimulator extends SimulatorHandle {
  deliver: 'b64_json' | 'url';
  revisePrompts: boolean;
  /** `usage.cost` to report, as given (a number or an object). */
  cost: unknown;
  /** Whether to report `usage` at all. */
  reportUsage: boolean;
}

export const COMPAT_OUTPUT_TOKENS = 1000;

export async function startCompatibleSimulator(options: { apiKey?: string } = {}): Promise<CompatibleSimulator> {
  const apiKey = options.apiKey;
  const files = new Map<string, { bytes: Buffer; type: string }>();
  let counter = 0;
  const defaults = { deliver: 'b64_json' as 'b64_json' | 'url', revisePrompts: false, cost: undefined as unknown, reportUsage: true };
  // The handler reads the switches from the returned handle, so tests flip them between requests.
  let settings = defaults;
  const handle = await startSimulatorServer(async (request, response, context) => {
    if (request.method === 'GET' && request.path.startsWith('/files/')) {
      const file = files.get(request.path.slice('/files/'.length));
      if (!file) return apiError(response, 404, { message: 'no such file', type: 'invalid_request_error' });
      response.writeHead(200, { 'content-type': file.type, 'content-length': String(file.bytes.length) });
      return void response.end(file.bytes);
    }
    const edit = request.path === '/v1/images/edits';
    if (request.method !== 'POST' || (!edit && request.path !== '/v1/images/generations')) {
      return apiError(response, 404, { message: `Not found: ${request.method} ${request.path}`, type: 'invalid_request_error' });
    }
    const fault = context.takeFault();
    if (playCommonFault(fault, response)) return;
    if (apiKey !== undefined && request.headers.authorization !== `Bearer ${apiKey}`) {
      return apiError(response, 401, { message: 'Invalid API key.', type: 'invalid_request_error', code: 'invalid_api_key' });
    }
    const fields: Record<string, unknown> = edit ? coerce(request.body?.fields ?? {}) : request.body;
    const references: RecordedFile[] = edit ? (request.body?.files ?? []).filter((file: RecordedFile) => file.field === 'image[]') : [];
    if (fields === null || typeof fields !== 'object')
      return apiError(response, 400, { message: 'Body must be JSON.', type: 'invalid_request_error' });
    if (edit && references.length === 0)
      return apiError(response, 400, { message: 'image[] is required.', type: 'invalid_request_error', param: 'image' });
    const problem = check(fields);
    if (problem)
      return apiError(response, 400, {
        message: problem.message,
        type: 'invalid_request_error',
        param: problem.param,
        code: 'invalid_value',
      });
    const prompt = String(fields.prompt);
    if (prompt.includes('forbidden')) {
      return apiError(response, 400, {
        message: 'Your prompt was flagged by our content filter.',
        type: 'invalid_request_error',
        code: 'content_policy_violation',
      });
    }
    const [width, height] =
      fields.width !== undefined
        ? [Number(fields.width), Number(fields.height)]
        : String(fields.size ?? '1024x1024')
            .split('x')
            .map(Number);
    const format = (fields.output_format as 'png' | 'jpeg' | 'webp' | undefined) ?? 'png';
    const n = Number(fields.n ?? 1);
    const count = fault?.kind === 'empty' ? 0 : fault?.kind === 'fewer' ? n - 1 : n;
    const wantUrl = fields.response_format === 'url' || settings.deliver === 'url';
    const data: Array<Record<string, string>> = [];
    for (let index = 0; index < count; index++) {
      const bytes = await renderSketch({
        prompt,
        seed: Number(fields.seed ?? 0) + index,
        width,
        height,
        format,
        reference: references[0] ? { bytes: references[0].bytes } : undefined,
      });
      const item: Record<string, string> = {};
      if (fault?.kind === 'url') {
        item.url = fault.url;
      } else if (wantUrl) {
        const id = `img-${counter++}.${format}`;
        files.set(id, { bytes, type: `image/${format}` });
        item.url = `${handle.url}/files/${id}`;
        handle.sentImages.push(bytes.toString('base64'));
      } else {
        item.b64_json = bytes.toString('base64');
        handle.sentImages.push(item.b64_json);
      }
      if (settings.revisePrompts) item.revised_prompt = `${prompt}, highly detailed`;
      data.push(item);
    }
    const body: Record<string, unknown> = { created: Math.floor(Date.now() / 1000), data };
    if (settings.reportUsage) {
      const input = Math.ceil(prompt.length / 4);
      const usage: Record<string, unknown> =
        fault?.kind === 'usage'
          ? (fault.usage as Record<string, unknown>)
          : { input_tokens: input, output_tokens: COMPAT_OUTPUT_TOKENS * count, total_tokens: input + COMPAT_OUTPUT_TOKENS * count };
      if (settings.cost !== undefined) usage.cost = settings.cost;
      body.usage = usage;
      handle.sentUsages.push(usage);
    }
    sendJson(response, 200, body);
  });
  const simulator: CompatibleSimulator = Object.assign(handle, defaults, {
    reset() {
      handle.requests.length = 0;
      handle.sentImages.length = 0;
      handle.sentUsages.length = 0;
      handle.setFault(undefined);
      Object.assign(simulator, defaults);
    },
  });
  settings = simulator;
  return simulator;
}

/** Multipart values are text: numbers and booleans back to their JSON types. */
function coerce(fields: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(fields)) {
    out[name] = /^-?\d+$/.test(value) ? Number(value) : value === 'true' ? true : value === 'false' ? false : value;
  }
  return out;
}

function check(fields: Record<string, unknown>): { param: string; message: string } | undefined {
  if (typeof fields.model !== 'string') return { param: 'model', message: 'model is required' };
  if (typeof fields.prompt !== 'string' || fields.prompt === '') return { param: 'prompt', message: 'prompt is required' };
  if (fields.n !== undefined && (!Number.isInteger(fields.n) || (fields.n as number) < 1 || (fields.n as number) > 10))
    return { param: 'n', message: 'n must be 1-10' };
  for (const side of ['width', 'height']) {
    const value = fields[side];
    if (value !== undefined && (!Number.isInteger(value) || (value as number) < 64 || (value as number) > 4096))
      return { param: side, message: `${side} must be an integer 64-4096` };
  }
  if (fields.response_format !== undefined && !['b64_json', 'url'].includes(fields.response_format as string))
    return { param: 'response_format', message: 'bad response_format' };
  if (fields.output_format !== undefined && !['png', 'jpeg', 'webp'].includes(fields.output_format as string))
    return { param: 'output_format', message: 'bad output_format' };
  if (fields.steps !== undefined && (!Number.isInteger(fields.steps) || (fields.steps as number) > 50))
    return { param: 'steps', message: 'steps must be an integer up to 50' };
  return undefined;
}
