import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
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
 * The fal.ai queue, as research/providers.md §6 and §4a describe it: `POST /{owner}/{alias}/{subpath}` with
 * `Authorization: Key …` queues the bare input; `GET /{owner}/{alias}/requests/{id}/status` answers 202
 * IN_QUEUE → 202 IN_PROGRESS → 200 COMPLETED; `GET …/requests/{id}/status/stream` tells the same as SSE
 * (`data: <status JSON>` events, comments while nothing changes, closed after COMPLETED); `GET …/requests/{id}`
 * is the result. fal never reports FAILED: validation and content-policy errors appear only on the result fetch,
 * as 422 `{"detail":[{loc,msg,type}]}`. Images are served from /files/… here (the CDN).
 */
export type FalOutcome =
  | 'ok'
  | 'never'
  | 'content_policy'
  | 'validation'
  | 'http500'
  | 'timeout504'
  | 'nsfw-first'
  | 'nsfw-all'
  | 'sync'
  | 'extra-images';

export interface FalScript {
  /** IN_QUEUE answers before IN_PROGRESS (default 1), then IN_PROGRESS answers before COMPLETED (default 1). */
  queuedPolls?: number;
  progressPolls?: number;
  /** Also stay IN_PROGRESS until this long after the submit (default 0): a job that keeps a stream waiting. */
  completeAfterMs?: number;
  outcome?: FalOutcome;
  /**
   * The status stream answering 404 or 500, 200 JSON instead of an event stream, or cut after its first
   * IN_PROGRESS event (`drop`: the socket destroyed; `end`: closed cleanly), never having said COMPLETED;
   * `failed`: a FAILED event after IN_PROGRESS (fal's own types have no such status; third-party schemas do).
   */
  streamFault?: FalStreamFault;
  /** Keep the status stream open this long after its COMPLETED event (default 0: fal closes it at once). */
  streamLingerMs?: number;
  /** Where image URLs point: here (default), another local port, the cloud metadata address (all, or the first only). */
  imageUrl?: 'simulator' | 'other-port' | 'metadata' | 'metadata-first';
  /** status_url/response_url/cancel_url: here (default), on another (untrusted) origin, or absent. */
  links?: 'simulator' | 'foreign' | 'absent';
}

export type FalSubmitFault = 'http500' | 'http429' | TransportFault;
export type FalStreamFault = 'http404' | 'http500' | 'json' | 'drop' | 'end' | 'failed';

/** How often an open status stream looks at its job (each look counts as a poll for the script). */
const STREAM_TICK_MS = 50;

/** Presets → the sizes Deepshi's catalog assumes (fal does not document them for Seedream 4.5 [R]). */
const PRESETS: Record<string, [number, number]> = {
  square_hd: [2048, 2048],
  square: [2048, 2048],
  portrait_4_3: [1728, 2304],
  portrait_16_9: [1600, 2848],
  landscape_4_3: [2304, 1728],
  landscape_16_9: [2848, 1600],
  auto_2K: [2048, 2048],
  auto_4K: [4096, 4096],
};

interface Job {
  id: string;
  appId: string;
  endpoint: string;
  input: Record<string, any>;
  polls: number;
  createdAt: number;
  script: FalScript;
  cancelled: boolean;
  files: Map<string, { width: number; height: number; tone: number }>;
}

export class FalSimulator {
  readonly key = 'sk-sim';
  script: FalScript = {};
  submitFault: FalSubmitFault | undefined;
  private server!: RecordingServer;
  /** A second local server: nothing should ever reach it. */
  other!: RecordingServer;
  private readonly jobs = new Map<string, Job>();
  private tones = 0;
  /** The bytes of every image file served from /files/ (the CDN), in the order they were downloaded. */
  served: Buffer[] = [];
  /** The status of every event sent on a status stream, in order. */
  streamEvents: string[] = [];

  get url(): string {
    return this.server.url;
  }
  get requests(): RecordedRequest[] {
    return this.server.requests;
  }
  submits(): RecordedRequest[] {
    return this.requests.filter((request) => request.method === 'POST');
  }
  statusPolls(): RecordedRequest[] {
    return this.requests.filter((request) => request.method === 'GET' && request.pathname.endsWith('/status'));
  }
  statusStreams(): RecordedRequest[] {
    return this.requests.filter((request) => request.method === 'GET' && request.pathname.endsWith('/status/stream'));
  }
  resultFetches(): RecordedRequest[] {
    return this.requests.filter((request) => request.method === 'GET' && /\/requests\/[^/]+$/.test(request.pathname));
  }
  cancels(): RecordedRequest[] {
    return this.requests.filter((request) => request.method === 'PUT');
  }
  downloads(): RecordedRequest[] {
    return this.requests.filter((request) => request.pathname.startsWith('/files/'));
  }

  async start(): Promise<this> {
    this.server = await startRecordingServer((request, response) => this.handle(request, response));
    this.other = await startRecordingServer((_request, response) => sendJson(response, 200, { status: 'COMPLETED' }));
    return this;
  }

  reset(): void {
    this.requests.length = 0;
    this.other.requests.length = 0;
    this.script = {};
    this.submitFault = undefined;
    this.served = [];
    this.streamEvents = [];
  }

  async close(): Promise<void> {
    await Promise.all([this.server.close(), this.other.close()]);
  }

  private async handle(request: RecordedRequest, response: ServerResponse): Promise<void> {
    if (request.pathname.startsWith('/files/')) return this.file(request, response);
    if (request.headers.authorization !== `Key ${this.key}`) return sendJson(response, 401, { detail: 'Invalid or missing credentials' });
    const parts = request.pathname.split('/').filter(Boolean);
    if (parts[2] === 'requests' && parts[3]) {
      const job = this.jobs.get(parts[3]);
      if (!job || job.appId !== `${parts[0]}/${parts[1]}`) return sendJson(response, 404, { detail: 'Request not found' });
      if (request.method === 'GET' && parts[4] === 'status' && parts.length === 5) return this.status(job, response);
      if (request.method === 'GET' && parts[4] === 'status' && parts[5] === 'stream' && parts.length === 6)
        return this.statusStream(job, response);
      if (request.method === 'GET' && parts.length === 4) return this.result(job, response);
      if (request.method === 'PUT' && parts[4] === 'cancel') return this.cancel(job, response);
      return sendJson(response, 405, { detail: 'Method Not Allowed' });
    }
    if (request.method === 'POST' && parts.length >= 3) return this.submit(request, parts, response);
    sendJson(response, 404, { detail: 'Not Found' });
  }

  private submit(request: RecordedRequest, parts: string[], response: ServerResponse): void {
    switch (this.submitFault) {
      case 'http500':
        return sendJson(response, 500, { detail: 'Internal Server Error' });
      case 'http429':
        return sendJson(response, 429, { detail: 'Too many requests' }, { 'retry-after': '1' });
      case undefined:
        break;
      default:
        return playTransportFault(this.submitFault, response);
    }
    if (request.body === null || typeof request.body !== 'object' || Array.isArray(request.body)) {
      return sendJson(response, 422, { detail: [{ loc: ['body'], msg: 'Input should be a valid dictionary', type: 'dict_type' }] });
    }
    const id = randomUUID();
    const appId = `${parts[0]}/${parts[1]}`;
    this.jobs.set(id, {
      id,
      appId,
      endpoint: parts.join('/'),
      input: request.body,
      polls: 0,
      createdAt: Date.now(),
      script: { ...this.script },
      cancelled: false,
      files: new Map(),
    });
    const base = this.script.links === 'foreign' ? this.other.url : this.url;
    const links =
      this.script.links === 'absent'
        ? {}
        : {
            response_url: `${base}/${appId}/requests/${id}`,
            status_url: `${base}/${appId}/requests/${id}/status`,
            cancel_url: `${base}/${appId}/requests/${id}/cancel`,
          };
    sendJson(response, 200, { request_id: id, status: 'IN_QUEUE', queue_position: 0, ...links });
  }

  private state(job: Job): 'IN_QUEUE' | 'IN_PROGRESS' | 'COMPLETED' {
    const queued = job.script.queuedPolls ?? 1;
    const running = job.script.progressPolls ?? 1;
    if (job.script.outcome === 'never' && !job.cancelled) return 'IN_QUEUE';
    const waited = Date.now() - job.createdAt >= (job.script.completeAfterMs ?? 0);
    if (job.cancelled || (job.polls > queued + running && waited)) return 'COMPLETED';
    return job.polls > queued ? 'IN_PROGRESS' : 'IN_QUEUE';
  }

  private status(job: Job, response: ServerResponse): void {
    job.polls++;
    const state = this.state(job);
    sendJson(response, state === 'COMPLETED' ? 200 : 202, this.statusBody(job, state));
  }

  /** The status object, the same on the status endpoint and in stream events. */
  private statusBody(job: Job, state: ReturnType<FalSimulator['state']>): Record<string, unknown> {
    const links = {
      response_url: `${this.url}/${job.appId}/requests/${job.id}`,
      status_url: `${this.url}/${job.appId}/requests/${job.id}/status`,
    };
    if (state === 'IN_QUEUE') return { status: state, queue_position: 0, request_id: job.id, ...links };
    if (state === 'IN_PROGRESS')
      return {
        status: state,
        request_id: job.id,
        logs: [{ message: 'step 1/20', level: 'INFO', source: 'user', timestamp: new Date().toISOString() }],
        ...links,
      };
    return { status: state, request_id: job.id, logs: [], metrics: { inference_time: 1.2 }, ...links };
  }

  /**
   * `text/event-stream`: an event with the current status at once, then every STREAM_TICK_MS an IN_PROGRESS event
   * while the job runs (a `: ping` comment while it is queued), then COMPLETED, and the stream closes.
   */
  private statusStream(job: Job, response: ServerResponse): void {
    const fault = job.script.streamFault;
    if (fault === 'http404') return sendJson(response, 404, { detail: 'Not Found' });
    if (fault === 'http500') return sendJson(response, 500, { detail: 'Internal Server Error' });
    if (fault === 'json') {
      job.polls++;
      return sendJson(response, 200, this.statusBody(job, this.state(job)));
    }
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let last: string | undefined;
    const tick = () => {
      if ((fault === 'drop' || fault === 'end' || fault === 'failed') && last === 'IN_PROGRESS') {
        clearInterval(timer);
        if (fault === 'drop') return response.socket?.destroy();
        if (fault === 'failed') {
          this.streamEvents.push('FAILED');
          response.write(`data: ${JSON.stringify({ status: 'FAILED', request_id: job.id })}\n\n`);
        }
        return response.end();
      }
      job.polls++;
      const state = this.state(job);
      if (state === 'IN_QUEUE' && last === 'IN_QUEUE') {
        response.write(': ping\n\n');
        return;
      }
      last = state;
      this.streamEvents.push(state);
      response.write(`data: ${JSON.stringify(this.statusBody(job, state))}\n\n`);
      if (state === 'COMPLETED') {
        clearInterval(timer);
        const linger = setTimeout(() => response.end(), job.script.streamLingerMs ?? 0);
        response.on('close', () => clearTimeout(linger));
      }
    };
    const timer = setInterval(tick, STREAM_TICK_MS);
    response.on('close', () => clearInterval(timer));
    tick();
  }

  private cancel(job: Job, response: ServerResponse): void {
    if (this.state(job) === 'COMPLETED') return sendJson(response, 400, { status: 'ALREADY_COMPLETED' });
    job.cancelled = true;
    sendJson(response, 202, { status: 'CANCELLATION_REQUESTED' });
  }

  private async result(job: Job, response: ServerResponse): Promise<void> {
    if (this.state(job) !== 'COMPLETED') return sendJson(response, 400, { detail: 'Request is still in progress' });
    if (job.cancelled) return sendJson(response, 400, { detail: 'Request was cancelled' });
    const outcome = job.script.outcome ?? 'ok';
    if (outcome === 'http500') return sendJson(response, 500, { detail: 'Internal Server Error' });
    if (outcome === 'timeout504') return sendJson(response, 504, { detail: 'Request timed out' }, { 'x-fal-request-timeout-type': 'user' });
    if (outcome === 'content_policy') {
      return sendJson(response, 422, {
        detail: [
          {
            loc: ['body', 'prompt'],
            msg: 'The content could not be processed because it contained material flagged by a content checker.',
            type: 'content_policy_violation',
            input: job.input.prompt,
          },
        ],
      });
    }
    const errors = validate(job.input, job.endpoint.endsWith('/edit'));
    if (outcome === 'validation')
      errors.push({
        loc: ['body', 'image_size'],
        msg: 'Image size is out of range for this model',
        type: 'value_error',
        input: job.input.image_size,
      });
    if (errors.length > 0) return sendJson(response, 422, { detail: errors });

    const [width, height] = sizeOf(job.input.image_size);
    const count = (job.input.num_images ?? 1) + (outcome === 'extra-images' ? 2 : 0);
    const images = [];
    for (let index = 0; index < count; index++) {
      const name = `${job.id}-${index}.jpeg`;
      const tone = ++this.tones;
      job.files.set(name, { width, height, tone });
      const url =
        outcome === 'sync'
          ? `data:image/jpeg;base64,${(await solidImage(width, height, 'jpeg', tone)).toString('base64')}`
          : job.script.imageUrl === 'other-port'
            ? `${this.other.url}/files/${name}`
            : job.script.imageUrl === 'metadata' || (job.script.imageUrl === 'metadata-first' && index === 0)
              ? `https://169.254.169.254/latest/meta-data/${name}`
              : `${this.url}/files/${name}`;
      images.push({ url, content_type: 'image/jpeg', file_name: name, width, height });
    }
    const flagged = images.map((_, index) => outcome === 'nsfw-all' || (outcome === 'nsfw-first' && index === 0));
    sendJson(response, 200, { images, seed: job.input.seed ?? 424242, has_nsfw_concepts: flagged }, { 'x-fal-request-id': job.id });
  }

  private async file(request: RecordedRequest, response: ServerResponse): Promise<void> {
    const name = request.pathname.split('/')[2] ?? '';
    const job = this.jobs.get(name.slice(0, 36));
    const file = job?.files.get(name);
    if (!file) return sendJson(response, 404, { detail: 'Not Found' });
    const bytes = await solidImage(file.width, file.height, 'jpeg', file.tone);
    this.served.push(bytes);
    response.writeHead(200, { 'content-type': 'image/jpeg' });
    response.end(bytes);
  }
}

type Problem = { loc: Array<string | number>; msg: string; type: string; input?: unknown };

/** The Seedream 4.5 input model [V S-fal types; V3 ziframe for the size rule]. */
function validate(input: Record<string, any>, edit: boolean): Problem[] {
  const problems: Problem[] = [];
  if (typeof input.prompt !== 'string' || input.prompt === '')
    problems.push({ loc: ['body', 'prompt'], msg: 'Field required', type: 'missing' });
  const size = input.image_size;
  if (size !== undefined) {
    if (typeof size === 'string') {
      if (!(size in PRESETS))
        problems.push({
          loc: ['body', 'image_size'],
          msg: `Input should be ${Object.keys(PRESETS).join(', ')} or an object`,
          type: 'enum',
          input: size,
        });
    } else if (!size || !Number.isInteger(size.width) || !Number.isInteger(size.height)) {
      problems.push({
        loc: ['body', 'image_size'],
        msg: 'Input should be a valid dictionary with width and height',
        type: 'model_type',
        input: size,
      });
    } else {
      const sidesOk = [size.width, size.height].every((side: number) => side >= 1920 && side <= 4096);
      const pixels = size.width * size.height;
      if (!sidesOk && !(pixels >= 2560 * 1440 && pixels <= 4096 * 4096)) {
        problems.push({
          loc: ['body', 'image_size'],
          msg: 'Image size must have each side between 1920 and 4096, or a total between 2560x1440 and 4096x4096 pixels',
          type: 'value_error',
          input: size,
        });
      }
    }
  }
  if (input.num_images !== undefined && (!Number.isInteger(input.num_images) || input.num_images < 1 || input.num_images > 6)) {
    problems.push({
      loc: ['body', 'num_images'],
      msg: 'Input should be between 1 and 6',
      type: 'less_than_equal',
      input: input.num_images,
    });
  }
  if (input.seed !== undefined && !Number.isInteger(input.seed))
    problems.push({ loc: ['body', 'seed'], msg: 'Input should be a valid integer', type: 'int_type' });
  for (const flag of ['enable_safety_checker', 'sync_mode']) {
    if (input[flag] !== undefined && typeof input[flag] !== 'boolean')
      problems.push({ loc: ['body', flag], msg: 'Input should be a valid boolean', type: 'bool_type' });
  }
  if (
    edit &&
    (!Array.isArray(input.image_urls) || input.image_urls.length === 0 || input.image_urls.some((url: unknown) => typeof url !== 'string'))
  ) {
    problems.push({ loc: ['body', 'image_urls'], msg: 'Field required', type: 'missing' });
  }
  return problems;
}

function sizeOf(size: unknown): [number, number] {
  if (typeof size === 'string') return PRESETS[size];
  if (size && typeof size === 'object') return [(size as { width: number }).width, (size as { height: number }).height];
  return PRESETS.auto_2K;
}
