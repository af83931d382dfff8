import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { probeBase64 } from '../../src/images/probe.ts';
import {
  playTransportFault,
  sendJson,
  solidImage,
  startRecordingServer,
  type RecordedRequest,
  type RecordingServer,
  type TransportFault,
} from './recording-server.ts';

/**
 * Black Forest Labs, as research/providers.md §3 describes it: `POST /v1/<model>` with `x-key` → `{id,
 * polling_url, cost, input_mp, output_mp}`; `GET /v1/get_result?id=` → Pending … Ready with a signed
 * `result.sample` link (served here) or a moderation/error status; FastAPI 422 validation bodies.
 */
export type BflOutcome = 'Ready' | 'Request Moderated' | 'Content Moderated' | 'Error' | 'Failed' | 'Task not found' | 'never';

export interface BflScript {
  /** Pending answers before the outcome (default 1). */
  pendingPolls?: number;
  /** Also wait this long after submit before the outcome (default 0). */
  readyAfterMs?: number;
  /** Default Ready; `never` stays Pending forever. */
  outcome?: BflOutcome;
  /** Answer with the legacy `state` field instead of `status`. */
  useStateField?: boolean;
  /** Where result.sample points: here (default), another local port, or the cloud metadata address. */
  sample?: 'simulator' | 'other-port' | 'metadata';
  /** Where polling_url points: here (default), another local port, or absent (clients build /v1/get_result). */
  pollingUrl?: 'simulator' | 'other-port' | 'absent';
  /** Fail this many polls with HTTP 500 before answering normally. */
  failingPolls?: number;
}

export type BflSubmitFault = 'http500' | 'http429' | 'http402' | TransportFault;

interface Job {
  id: string;
  width: number;
  height: number;
  format: 'jpeg' | 'png';
  seed: number;
  prompt: string;
  polls: number;
  createdAt: number;
  script: BflScript;
  tone: number;
}

export const BFL_MAX_PIXELS = 4 * 1024 * 1024;

export class BflSimulator {
  readonly key = 'sk-sim';
  script: BflScript = {};
  submitFault: BflSubmitFault | undefined;
  /** Credits to report per submit, in order (else BFL's formula: 3 + 1.5 per further output MP + 1.5 per input MP). */
  costs: number[] = [];
  private server!: RecordingServer;
  /** A second local server: nothing should ever reach it (SSRF targets). */
  other!: RecordingServer;
  private readonly jobs = new Map<string, Job>();
  private tones = 0;

  get url(): string {
    return this.server.url;
  }
  get requests(): RecordedRequest[] {
    return this.server.requests;
  }
  submits(): RecordedRequest[] {
    return this.requests.filter((request) => request.method === 'POST');
  }
  polls(): RecordedRequest[] {
    return this.requests.filter((request) => request.pathname === '/v1/get_result');
  }
  downloads(): RecordedRequest[] {
    return this.requests.filter((request) => request.pathname.startsWith('/results/'));
  }

  async start(): Promise<this> {
    this.server = await startRecordingServer((request, response) => this.handle(request, response));
    this.other = await startRecordingServer(async (_request, response) => {
      response.writeHead(200, { 'content-type': 'image/jpeg' });
      response.end(await solidImage(64, 64, 'jpeg', 1));
    });
    return this;
  }

  reset(): void {
    this.requests.length = 0;
    this.other.requests.length = 0;
    this.script = {};
    this.submitFault = undefined;
    this.costs = [];
  }

  async close(): Promise<void> {
    await Promise.all([this.server.close(), this.other.close()]);
  }

  private async handle(request: RecordedRequest, response: ServerResponse): Promise<void> {
    if (request.pathname.startsWith('/results/')) return this.sample(request, response);
    if (request.headers['x-key'] !== this.key) return sendJson(response, 401, { detail: 'Not authenticated' });
    if (request.method === 'GET' && request.pathname === '/v1/get_result') return this.poll(request, response);
    if (request.method === 'POST' && /^\/v1\/flux-[a-z0-9.-]+$/.test(request.pathname)) return this.submit(request, response);
    sendJson(response, 404, { detail: 'Not Found' });
  }

  private submit(request: RecordedRequest, response: ServerResponse): void {
    switch (this.submitFault) {
      case 'http500':
        return sendJson(response, 500, { detail: 'Internal Server Error' });
      case 'http429':
        return sendJson(response, 429, { detail: 'You have exceeded the number of active tasks (24).' }, { 'retry-after': '1' });
      case 'http402':
        return sendJson(response, 402, { detail: 'Insufficient credits' });
      case undefined:
        break;
      default:
        return playTransportFault(this.submitFault, response);
    }
    const errors = validate(request.body);
    if (errors.length > 0) return sendJson(response, 422, { detail: errors });
    const body = request.body as Record<string, any>;
    const width = body.width ?? 1024;
    const height = body.height ?? 1024;
    const inputs = Object.keys(body).filter((key) => /^input_image(_[2-8])?$/.test(key));
    const inputMegapixels = inputs.reduce((sum, key) => {
      const probe = probeBase64(String(body[key]));
      return sum + (probe ? Math.ceil((probe.width * probe.height) / (1024 * 1024)) : 1);
    }, 0);
    const outputMegapixels = Math.ceil((width * height) / (1024 * 1024));
    const cost = this.costs.shift() ?? 3 + (outputMegapixels - 1) * 1.5 + inputMegapixels * 1.5;
    const id = randomUUID();
    this.jobs.set(id, {
      id,
      width,
      height,
      format: body.output_format ?? 'jpeg',
      seed: body.seed ?? 12345,
      prompt: body.prompt,
      polls: 0,
      createdAt: Date.now(),
      script: { ...this.script },
      tone: ++this.tones,
    });
    const pollingUrl =
      this.script.pollingUrl === 'other-port' ? `${this.other.url}/v1/get_result?id=${id}` : `${this.url}/v1/get_result?id=${id}`;
    sendJson(response, 200, {
      id,
      ...(this.script.pollingUrl === 'absent' ? {} : { polling_url: pollingUrl }),
      cost,
      input_mp: inputs.length > 0 ? round2(inputMegapixels) : 0,
      output_mp: round2((width * height) / (1024 * 1024)),
    });
  }

  private poll(request: RecordedRequest, response: ServerResponse): void {
    const id = request.query.get('id') ?? '';
    const job = this.jobs.get(id);
    if (!job) return sendJson(response, 200, { id, status: 'Task not found' });
    job.polls++;
    const script = job.script;
    if (job.polls <= (script.failingPolls ?? 0)) return sendJson(response, 500, { detail: 'Internal Server Error' });
    const field = script.useStateField ? 'state' : 'status';
    const outcome = script.outcome ?? 'Ready';
    const pending =
      outcome === 'never' ||
      job.polls - (script.failingPolls ?? 0) <= (script.pendingPolls ?? 1) ||
      Date.now() - job.createdAt < (script.readyAfterMs ?? 0);
    if (pending)
      return sendJson(response, 200, {
        id,
        [field]: 'Pending',
        progress: Math.min(0.9, job.polls / 10),
        result: null,
        details: null,
        preview: null,
      });
    if (outcome !== 'Ready') {
      return sendJson(response, 200, {
        id,
        [field]: outcome,
        result: null,
        progress: null,
        details: outcome === 'Error' ? { error: 'worker crashed' } : null,
      });
    }
    const sample =
      script.sample === 'other-port'
        ? `${this.other.url}/results/${id}/sample.${job.format}`
        : script.sample === 'metadata'
          ? 'https://169.254.169.254/latest/meta-data/iam/sample.jpeg'
          : `${this.url}/results/${id}/sample.${job.format}?se=2099-01-01&sig=simulated`;
    const now = Date.now() / 1000;
    sendJson(response, 200, {
      id,
      [field]: 'Ready',
      result: { sample, prompt: job.prompt, seed: job.seed, start_time: now - 1, end_time: now, duration: 1 },
      progress: null,
      details: null,
      preview: null,
    });
  }

  private async sample(request: RecordedRequest, response: ServerResponse): Promise<void> {
    const job = this.jobs.get(request.pathname.split('/')[2] ?? '');
    if (!job) return sendJson(response, 404, { detail: 'BlobNotFound' });
    response.writeHead(200, { 'content-type': `image/${job.format}` });
    response.end(await solidImage(job.width, job.height, job.format, job.tone));
  }
}

/** FastAPI/pydantic validation of the FLUX.2 inputs [V S-bflapi]; each problem as `{loc, msg, type}`. */
function validate(body: unknown): Array<{ loc: Array<string | number>; msg: string; type: string }> {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    return [{ loc: ['body'], msg: 'Input should be a valid dictionary', type: 'dict_type' }];
  const fields = body as Record<string, unknown>;
  const errors: Array<{ loc: Array<string | number>; msg: string; type: string }> = [];
  if (typeof fields.prompt !== 'string')
    errors.push({
      loc: ['body', 'prompt'],
      msg: fields.prompt === undefined ? 'Field required' : 'Input should be a valid string',
      type: fields.prompt === undefined ? 'missing' : 'string_type',
    });
  for (const side of ['width', 'height'] as const) {
    const value = fields[side];
    if (value === undefined || value === null) continue;
    if (!Number.isInteger(value)) errors.push({ loc: ['body', side], msg: 'Input should be a valid integer', type: 'int_type' });
    else if ((value as number) < 64)
      errors.push({ loc: ['body', side], msg: 'Input should be greater than or equal to 64', type: 'greater_than_equal' });
    else if ((value as number) % 16 !== 0)
      errors.push({ loc: ['body', side], msg: 'Input should be a multiple of 16', type: 'multiple_of' });
  }
  if (
    Number.isInteger(fields.width) &&
    Number.isInteger(fields.height) &&
    (fields.width as number) * (fields.height as number) > BFL_MAX_PIXELS
  ) {
    errors.push({ loc: ['body'], msg: 'Value error, width * height must not exceed 4 megapixels', type: 'value_error' });
  }
  if (fields.seed !== undefined && fields.seed !== null && !Number.isInteger(fields.seed))
    errors.push({ loc: ['body', 'seed'], msg: 'Input should be a valid integer', type: 'int_type' });
  if (fields.safety_tolerance !== undefined) {
    const value = fields.safety_tolerance;
    if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 5) {
      errors.push({ loc: ['body', 'safety_tolerance'], msg: 'Input should be less than or equal to 5', type: 'less_than_equal' });
    }
  }
  if (fields.output_format !== undefined && fields.output_format !== 'jpeg' && fields.output_format !== 'png') {
    errors.push({ loc: ['body', 'output_format'], msg: "Input should be 'jpeg' or 'png'", type: 'enum' });
  }
  for (const [key, value] of Object.entries(fields)) {
    if (/^input_image(_\d+)?$/.test(key) && !/^input_image(_[2-8])?$/.test(key))
      errors.push({ loc: ['body', key], msg: 'Extra inputs are not permitted', type: 'extra_forbidden' });
    else if (/^input_image/.test(key) && typeof value !== 'string')
      errors.push({ loc: ['body', key], msg: 'Input should be a valid string', type: 'string_type' });
  }
  return errors;
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
