import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { solidImage } from './gemini-simulator.ts';

/**
 * A local stand-in for xAI's image API (research/providers.md §5), for tests only: `POST /v1/images/generations`
 * and `POST /v1/images/edits` (JSON). It validates like the real API (Bearer key, "Argument not supported: X" for
 * fields xAI does not take, size and style included; case-sensitive aspect_ratio and lowercase resolution enums;
 * image/images on edits), answers with real JPEG bytes at the catalog's derived size for the ratio and tier,
 * as base64 or as a link it serves itself, reports `usage.cost_in_usd_ticks`, reproduces moderation
 * (`respect_moderation: false` with a placeholder), both error body shapes, and transport faults.
 * `other` is a second server on another port, for result links that must never be fetched (it counts hits).
 */

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: any;
  /** The HTTP-200 answer sent, when one was sent. */
  answer?: any;
}

export type XaiOutcome =
  | { kind: 'images'; as?: 'b64_json' | 'url' | 'data_uri'; ticks?: unknown; extra?: number }
  | { kind: 'moderated'; indexes?: number[] }
  | { kind: 'result_url'; url: string }
  | { kind: 'input_moderated' }
  | { kind: 'error'; status: number; body: unknown; headers?: Record<string, string> }
  | { kind: 'rate_limited'; retryAfter?: string }
  | { kind: 'hang' }
  | { kind: 'reset' }
  | { kind: 'malformed_json' }
  | { kind: 'oversized'; bytes: number };

export interface XaiSimulator {
  url: string;
  apiKey: string;
  requests: RecordedRequest[];
  /** Headers of each result-link download served by the simulator itself. */
  downloads: http.IncomingHttpHeaders[];
  other: { url: string; hits: number };
  /** Outcomes for the next image calls, in arrival order; afterwards every call succeeds. Image colours follow the call number since the last reset. */
  queue(...outcomes: XaiOutcome[]): void;
  reset(): void;
  close(): Promise<void>;
}

const RATIOS = ['1:1', '3:4', '4:3', '9:16', '16:9', '2:3', '3:2', '9:19.5', '19.5:9', '9:20', '20:9', '1:2', '2:1', 'auto'];
/** xAI documents "about 1 MP" and "about 4 MP" only; these are the catalog's derived sizes [I] (catalog/models.yaml). */
export const XAI_SIZES: Record<string, Record<string, string>> = {
  '1k': {
    '1:1': '1024x1024',
    '3:4': '880x1168',
    '4:3': '1168x880',
    '9:16': '768x1360',
    '16:9': '1360x768',
    '2:3': '832x1248',
    '3:2': '1248x832',
    '9:19.5': '688x1488',
    '19.5:9': '1488x688',
    '9:20': '688x1536',
    '20:9': '1536x688',
    '1:2': '720x1440',
    '2:1': '1440x720',
  },
  '2k': {
    '1:1': '2048x2048',
    '3:4': '1760x2336',
    '4:3': '2336x1760',
    '9:16': '1536x2720',
    '16:9': '2720x1536',
    '2:3': '1664x2496',
    '3:2': '2496x1664',
    '9:19.5': '1376x2976',
    '19.5:9': '2976x1376',
    '9:20': '1376x3072',
    '20:9': '3072x1376',
    '1:2': '1440x2880',
    '2:1': '2880x1440',
  },
};
/** Price per output image in ticks (1 tick = 1e-10 USD), by model and tier; plus per input image on edits [V3 prices]. */
export const XAI_TICKS: Record<string, { perImage: Record<string, number>; perInputImage: number }> = {
  'grok-imagine-image': { perImage: { '1k': 200_000_000, '2k': 200_000_000 }, perInputImage: 0 },
  'grok-imagine-image-quality': { perImage: { '1k': 500_000_000, '2k': 700_000_000 }, perInputImage: 100_000_000 },
};
const FIELDS = new Set(['model', 'prompt', 'n', 'response_format', 'aspect_ratio', 'resolution', 'quality', 'output_format', 'user']);
const EDIT_FIELDS = new Set([...FIELDS, 'image', 'images']);
const INVALID = 'Client specified an invalid argument';

class XaiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super('xai error');
  }
}
const invalid = (error: string) => new XaiError(400, { code: INVALID, error });

export async function startXaiSimulator(options: { apiKey?: string } = {}): Promise<XaiSimulator> {
  const apiKey = options.apiKey ?? 'sk-sim';
  const requests: RecordedRequest[] = [];
  const results = new Map<string, Buffer>();
  let pending: XaiOutcome[] = [];
  let served = 0;

  const other = { url: '', hits: 0 };
  const otherServer = http.createServer(async (_req, res) => {
    other.hits++;
    res.writeHead(200, { 'content-type': 'image/jpeg' });
    res.end(Buffer.from(await solidImage(1024, 1024, 'image/jpeg'), 'base64'));
  });

  const sim: XaiSimulator = {
    url: '',
    apiKey,
    requests,
    downloads: [],
    other,
    queue: (...outcomes) => void pending.push(...outcomes),
    reset() {
      requests.length = 0;
      pending = [];
      served = 0;
      sim.downloads = [];
      other.hits = 0;
    },
    close: async () => {
      for (const target of [server, otherServer]) {
        target.closeAllConnections();
        await new Promise<void>((resolve) => target.close(() => resolve()));
      }
    },
  };

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    if (req.method === 'GET' && req.url?.startsWith('/xai-tmp-imgen/')) {
      const bytes = results.get(req.url);
      sim.downloads.push(req.headers);
      res.writeHead(bytes ? 200 : 404, { 'content-type': 'image/jpeg' });
      return void res.end(bytes);
    }
    let body: any;
    try {
      body = JSON.parse(raw);
    } catch {
      body = raw;
    }
    const record: RecordedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body };
    requests.push(record);
    try {
      const edit = checkRequest(req, body, raw, apiKey);
      const outcome = pending.shift() ?? { kind: 'images' };
      const answer = await respond(outcome, body, edit, served++, res, sim.url, results);
      if (answer) {
        record.answer = answer;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer));
      }
    } catch (error) {
      const failure = error instanceof XaiError ? error : new XaiError(500, { code: 'Internal error', error: String(error) });
      res.writeHead(failure.status, { 'content-type': 'application/json', ...failure.headers });
      res.end(JSON.stringify(failure.body));
    }
  });
  for (const target of [server, otherServer]) await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  sim.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  other.url = `http://127.0.0.1:${(otherServer.address() as AddressInfo).port}`;
  return sim;
}

/** The real API's checks. Returns the number of reference images (0 for generations). */
function checkRequest(req: http.IncomingMessage, body: any, raw: string, apiKey: string): number {
  const edit = req.url === '/v1/images/edits';
  if (req.method !== 'POST' || (!edit && req.url !== '/v1/images/generations'))
    throw new XaiError(404, { code: 'Not found', error: `No route for ${req.method} ${req.url}` });
  // xAI answers a wrong key with 400 and this text [R]; a missing header with 401 [R].
  const auth = req.headers.authorization;
  if (!auth)
    throw new XaiError(401, {
      code: 'Unauthenticated',
      error: 'No API key provided. Please provide an API key in the Authorization header.',
    });
  if (auth !== `Bearer ${apiKey}`) throw invalid('Incorrect API key provided: sk***. You can obtain an API key from https://console.x.ai.');
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalid(`Failed to deserialize the JSON body into the target type: ${raw.slice(0, 20)}`);
  for (const field of Object.keys(body)) if (!(edit ? EDIT_FIELDS : FIELDS).has(field)) throw invalid(`Argument not supported: ${field}`);
  if (!XAI_TICKS[body.model])
    throw new XaiError(404, {
      code: 'Some requested entity was not found',
      error: `The model ${body.model} does not exist or your team does not have access to it.`,
    });
  if (typeof body.prompt !== 'string' || body.prompt.trim() === '') throw invalid('prompt: must be a non-empty string');
  if (body.n !== undefined && (!Number.isInteger(body.n) || body.n < 1 || body.n > 10))
    throw invalid('n: must be an integer between 1 and 10');
  if (body.response_format !== undefined && !['url', 'b64_json'].includes(body.response_format))
    throw invalid(`Invalid response_format: ${body.response_format}`);
  if (body.aspect_ratio !== undefined && !RATIOS.includes(body.aspect_ratio))
    throw invalid(`Invalid aspect_ratio: ${body.aspect_ratio}. Supported: ${RATIOS.join(', ')}`);
  if (body.resolution !== undefined && !['1k', '2k'].includes(body.resolution))
    throw invalid(`Invalid resolution: ${body.resolution}. Supported: 1k, 2k`);
  if (!edit) return 0;
  if (body.image !== undefined && body.images !== undefined) throw invalid('Only one of image and images may be set.');
  const references = body.image !== undefined ? [body.image] : body.images;
  if (!Array.isArray(references) || references.length === 0) throw invalid('An image is required for edits: set image or images.');
  for (const reference of references) {
    if (typeof reference?.url !== 'string' || (reference.type !== undefined && reference.type !== 'image_url'))
      throw invalid('image: expected {"url": string, "type": "image_url"}');
    const match = /^data:(image\/(?:png|jpeg|webp));base64,([A-Za-z0-9+/]+={0,2})$/.exec(reference.url);
    // The real API would fetch an https link (5 s timeout); the simulator has no network, so links fail like a failed fetch.
    if (!match) throw invalid('Failed to fetch the image: only PNG, JPG and WebP data URIs or reachable URLs are supported.');
    if (Buffer.byteLength(match[2], 'base64') > 10 * 1024 * 1024) throw invalid('Image is larger than 10 MiB.');
  }
  return references.length;
}

async function respond(
  outcome: XaiOutcome,
  body: any,
  references: number,
  call: number,
  res: http.ServerResponse,
  base: string,
  results: Map<string, Buffer>,
): Promise<object | undefined> {
  switch (outcome.kind) {
    case 'hang':
      return new Promise((resolve) => res.on('close', () => resolve(undefined))); // never answers; ends when the client gives up
    case 'reset':
      res.socket?.destroy();
      return undefined;
    case 'malformed_json':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"created":1776527939,"data":[{"b64_json":');
      return undefined;
    case 'oversized':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"data":[],"padding":"');
      for (let sent = 0; sent < outcome.bytes; sent += 65536) res.write('A'.repeat(65536));
      res.end('"}');
      return undefined;
    case 'error':
      throw new XaiError(outcome.status, outcome.body, outcome.headers);
    case 'rate_limited':
      throw new XaiError(
        429,
        { code: 'Too many requests', error: 'Your team has exceeded its requests-per-second rate limit.' },
        { 'retry-after': outcome.retryAfter ?? '2' },
      );
    case 'input_moderated':
      // The sources say only that an input block names a reason [V3 Comfy]; this shape is assumed [R].
      throw invalid('Generated image rejected by content moderation. Your request was flagged by our safety system.');
  }
  const model = XAI_TICKS[body.model];
  const tier = body.resolution ?? '1k';
  const ratio = body.aspect_ratio && body.aspect_ratio !== 'auto' ? body.aspect_ratio : '1:1';
  const [width, height] = XAI_SIZES[tier][ratio].split('x').map(Number);
  const n = (body.n ?? 1) + (outcome.kind === 'images' ? (outcome.extra ?? 0) : 0);
  const as = outcome.kind === 'images' ? (outcome.as ?? body.response_format ?? 'url') : (body.response_format ?? 'url');
  const data = await Promise.all(
    Array.from({ length: n }, async (_, index) => {
      const moderated = outcome.kind === 'moderated' && (outcome.indexes ?? [index]).includes(index);
      // A moderated image is replaced by a small grey placeholder, still delivered in the asked format.
      const base64 = moderated
        ? await solidImage(64, 64, 'image/jpeg', 255)
        : await solidImage(width, height, 'image/jpeg', (call * 10 + index) % 255);
      const item: Record<string, unknown> = {
        mime_type: 'image/jpeg',
        revised_prompt: `A vivid, detailed rendering of: ${body.prompt}`,
        respect_moderation: !moderated,
      };
      if (outcome.kind === 'result_url') item.url = outcome.url;
      else if (as === 'b64_json') item.b64_json = base64;
      else if (as === 'data_uri') item.b64_json = `data:image/jpeg;base64,${base64}`;
      else {
        const path = `/xai-tmp-imgen/xai-tmp-imgen-${randomUUID()}.jpeg`;
        results.set(path, Buffer.from(base64, 'base64'));
        item.url = `${base}${path}`;
      }
      return item;
    }),
  );
  const ticks =
    outcome.kind === 'images' && 'ticks' in outcome ? outcome.ticks : n * model.perImage[tier] + references * model.perInputImage;
  return { created: 1776527939, data, usage: { cost_in_usd_ticks: ticks } };
}
