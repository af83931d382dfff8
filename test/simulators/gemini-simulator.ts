import type http from 'node:http';
import sharp from 'sharp';
import { startRecordingServer, type RecordedRequest as RecordedCall } from './recording-server.ts';

/**
 * A local stand-in for Gemini's `generateContent` image API (research/providers.md §2), for tests only.
 * It validates requests the way the real API does (API key, unknown fields, per-model aspectRatio/imageSize
 * enums with the case-sensitive K, inlineData), answers with real PNG/JPEG bytes at exactly the size the
 * providers.md table gives for the asked tier, reports usageMetadata, and reproduces Gemini's HTTP-200
 * refusals (prompt blocks, finishReasons, text-only answers), its error bodies, and transport faults.
 * Every request is recorded (method, path, headers, parsed body) with the answer's usageMetadata.
 */

export interface RecordedRequest extends RecordedCall {
  /** The HTTP-200 answer sent (usageMetadata, parts with the exact base64), when one was sent. */
  answer?: any;
}

export type GeminiOutcome =
  | { kind: 'image'; mimeType?: 'image/png' | 'image/jpeg'; images?: number; usageMetadata?: unknown; delayMs?: number }
  | { kind: 'prompt_blocked'; reason: string; message?: string }
  | { kind: 'finish'; reason: string; message?: string }
  | { kind: 'text_only'; text?: string }
  | { kind: 'rate_limited'; retryDelay?: string }
  | { kind: 'error'; status: number; body: unknown }
  | { kind: 'hang' }
  | { kind: 'reset' }
  | { kind: 'malformed_json' }
  | { kind: 'oversized'; bytes: number };

export interface GeminiSimulator {
  url: string;
  apiKey: string;
  requests: RecordedRequest[];
  /** Most generateContent calls in progress at once since the last reset. */
  maxInFlight: number;
  /** Outcomes for the next generateContent calls, in arrival order; afterwards every call gets an image. */
  queue(...outcomes: GeminiOutcome[]): void;
  reset(): void;
  close(): Promise<void>;
}

const COMMON_RATIOS = ['1:1', '2:3', '3:2', '3:4', '4:3', '4:5', '5:4', '9:16', '16:9', '21:9'];
const FLASH_ONLY_RATIOS = ['1:4', '4:1', '1:8', '8:1'];

/** Output pixel sizes by tier and ratio [V S-litellm table in providers.md §2]. */
export const GEMINI_SIZES: Record<string, Record<string, string>> = {
  '512': {
    '1:1': '512x512',
    '2:3': '424x632',
    '3:2': '632x424',
    '3:4': '448x600',
    '4:3': '600x448',
    '4:5': '464x576',
    '5:4': '576x464',
    '9:16': '384x688',
    '16:9': '688x384',
    '21:9': '792x336',
    '1:4': '256x1024',
    '4:1': '1024x256',
    '1:8': '192x1536',
    '8:1': '1536x192',
  },
  '1K': {
    '1:1': '1024x1024',
    '2:3': '848x1264',
    '3:2': '1264x848',
    '3:4': '896x1200',
    '4:3': '1200x896',
    '4:5': '928x1152',
    '5:4': '1152x928',
    '9:16': '768x1376',
    '16:9': '1376x768',
    '21:9': '1584x672',
    '1:4': '512x2048',
    '4:1': '2048x512',
    '1:8': '384x3072',
    '8:1': '3072x384',
  },
  '2K': {
    '1:1': '2048x2048',
    '2:3': '1696x2528',
    '3:2': '2528x1696',
    '3:4': '1792x2400',
    '4:3': '2400x1792',
    '4:5': '1856x2304',
    '5:4': '2304x1856',
    '9:16': '1536x2752',
    '16:9': '2752x1536',
    '21:9': '3168x1344',
    '1:4': '1024x4096',
    '4:1': '4096x1024',
    '1:8': '768x6144',
    '8:1': '6144x768',
  },
  '4K': {
    '1:1': '4096x4096',
    '2:3': '3392x5056',
    '3:2': '5056x3392',
    '3:4': '3584x4800',
    '4:3': '4800x3584',
    '4:5': '3712x4608',
    '5:4': '4608x3712',
    '9:16': '3072x5504',
    '16:9': '5504x3072',
    '21:9': '6336x2688',
    '1:4': '2048x8192',
    '4:1': '8192x2048',
    '1:8': '1536x12288',
    '8:1': '12288x1536',
  },
};

/**
 * Per model: allowed enums and the image-output tokens per tier (providers.md §2: Pro 1120 at 1K/2K, 2000 at 4K;
 * 3.1 Flash 1120 at 1K, about 747 / 1680 / 2520 at 512 / 2K / 4K [I]). Pro thinks; its thoughts are billed.
 */
export const GEMINI_MODELS: Record<
  string,
  { ratios: string[]; sizes: string[]; imageTokens: Record<string, number>; thoughtTokens: number }
> = {
  'gemini-3-pro-image-preview': {
    ratios: COMMON_RATIOS,
    sizes: ['1K', '2K', '4K'],
    imageTokens: { '1K': 1120, '2K': 1120, '4K': 2000 },
    thoughtTokens: 250,
  },
  'gemini-3.1-flash-image-preview': {
    ratios: [...COMMON_RATIOS, ...FLASH_ONLY_RATIOS],
    sizes: ['512', '1K', '2K', '4K'],
    imageTokens: { '512': 747, '1K': 1120, '2K': 1680, '4K': 2520 },
    thoughtTokens: 0,
  },
};
/** Tokens of the commentary text part ("Here is your image."), of each reference image [R], of prompt text (chars/4). */
export const COMMENT_TOKENS = 5;
export const INPUT_IMAGE_TOKENS = 560;
export const promptTokens = (text: string) => Math.ceil(text.length / 4);

const TOP_LEVEL = new Set([
  'contents',
  'generationConfig',
  'safetySettings',
  'systemInstruction',
  'tools',
  'toolConfig',
  'cachedContent',
  'labels',
]);
const GENERATION_CONFIG = new Set([
  'responseModalities',
  'imageConfig',
  'temperature',
  'topP',
  'topK',
  'candidateCount',
  'maxOutputTokens',
  'stopSequences',
  'seed',
  'thinkingConfig',
  'responseMimeType',
]);
const IMAGE_CONFIG = new Set(['aspectRatio', 'imageSize', 'personGeneration']);
const INPUT_TYPES = new Set(['image/png', 'image/jpeg', 'image/webp', 'image/heic', 'image/heif']);

const rendered = new Map<string, Promise<string>>();
/**
 * A solid-colour image of exactly width × height, base64; cached (a 4K PNG takes a quarter of a second).
 * The colour follows `tone` (distinct for tones 0-255), so images of different calls differ.
 */
export function solidImage(width: number, height: number, mimeType: string, tone = 0): Promise<string> {
  const key = `${width}x${height}/${mimeType}/${tone}`;
  let image = rendered.get(key);
  if (!image) {
    const background = { r: (tone * 67) % 256, g: (tone * 131 + 40) % 256, b: (tone * 29 + 90) % 256 };
    const canvas = sharp({ create: { width, height, channels: 3, background } });
    image = (mimeType === 'image/jpeg' ? canvas.jpeg() : canvas.png()).toBuffer().then((bytes) => bytes.toString('base64'));
    rendered.set(key, image);
  }
  return image;
}

class GoogleError extends Error {
  constructor(
    readonly status: number,
    readonly statusText: string,
    message: string,
    readonly details?: unknown[],
    readonly rawBody?: unknown,
  ) {
    super(message);
  }
  body() {
    if (this.rawBody !== undefined) return this.rawBody;
    return {
      error: { code: this.status, message: this.message, status: this.statusText, ...(this.details ? { details: this.details } : {}) },
    };
  }
}
const invalid = (message: string) => new GoogleError(400, 'INVALID_ARGUMENT', message);

export async function startGeminiSimulator(options: { apiKey?: string } = {}): Promise<GeminiSimulator> {
  const apiKey = options.apiKey ?? 'sk-sim';
  let pending: GeminiOutcome[] = [];
  let served = 0;
  let inFlight = 0;

  const simulator = { maxInFlight: 0 } as GeminiSimulator;
  const server = await startRecordingServer(async (record: RecordedRequest, res, req) => {
    const body = record.body;
    const raw = typeof body === 'string' ? body : JSON.stringify(body);
    const send = (status: number, payload: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
      res.end(JSON.stringify(payload));
    };
    inFlight++;
    simulator.maxInFlight = Math.max(simulator.maxInFlight, inFlight);
    try {
      const model = checkRequest(req, body, raw, apiKey);
      const outcome = pending.shift() ?? { kind: 'image' };
      if (outcome.kind === 'image' && outcome.delayMs) await new Promise((resolve) => setTimeout(resolve, outcome.delayMs));
      const answer = await respond(outcome, model, body, served++, res);
      if (answer) {
        record.answer = answer;
        send(200, answer);
      }
    } catch (error) {
      if (error instanceof GoogleError) send(error.status, error.body());
      else send(500, { error: { code: 500, message: String(error), status: 'INTERNAL' } });
    } finally {
      inFlight--;
    }
  });
  const requests = server.requests as RecordedRequest[];

  Object.assign(simulator, {
    url: server.url,
    apiKey,
    requests,
    queue: (...outcomes: GeminiOutcome[]) => void pending.push(...outcomes),
    reset() {
      requests.length = 0;
      pending = [];
      simulator.maxInFlight = 0;
    },
    close: server.close,
  });
  return simulator;
}

/** The real API's checks, in its order: route, key, JSON, fields, enums. Returns the model's spec. */
function checkRequest(req: http.IncomingMessage, body: any, raw: string, apiKey: string) {
  const match = /^\/v1beta\/models\/([^/:?]+):generateContent$/.exec(req.url ?? '');
  if (req.method !== 'POST' || !match)
    throw new GoogleError(404, 'NOT_FOUND', `The requested URL ${req.url} was not found on this server.`);
  const modelId = decodeURIComponent(match[1]);
  const key = req.headers['x-goog-api-key'];
  if (key === undefined) {
    throw new GoogleError(
      403,
      'PERMISSION_DENIED',
      "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
    );
  }
  if (key !== apiKey) {
    throw new GoogleError(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
      {
        '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
        reason: 'API_KEY_INVALID',
        domain: 'googleapis.com',
        metadata: { service: 'generativelanguage.googleapis.com' },
      },
    ]);
  }
  const model = GEMINI_MODELS[modelId];
  if (!model)
    throw new GoogleError(
      404,
      'NOT_FOUND',
      `models/${modelId} is not found for API version v1beta, or is not supported for generateContent.`,
    );
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalid(`Invalid JSON payload received. Unexpected token.\n${raw.slice(0, 20)}`);
  for (const field of Object.keys(body))
    if (!TOP_LEVEL.has(field)) throw invalid(`Invalid JSON payload received. Unknown name "${field}": Cannot find field.`);
  if (!Array.isArray(body.contents) || body.contents.length === 0)
    throw invalid('* GenerateContentRequest.contents: contents is not specified');
  let references = 0;
  body.contents.forEach((content: any, c: number) => {
    if (!Array.isArray(content?.parts) || content.parts.length === 0)
      throw invalid(`* GenerateContentRequest.contents[${c}].parts: contents.parts must not be empty.`);
    content.parts.forEach((part: any, p: number) => {
      if (typeof part?.text === 'string') return;
      const data = part?.inlineData;
      if (!data)
        throw invalid(
          `* GenerateContentRequest.contents[${c}].parts[${p}].data: required oneof field 'data' must have one initialized field`,
        );
      if (!INPUT_TYPES.has(data.mimeType)) throw invalid(`Unsupported MIME type: ${data.mimeType}`);
      if (typeof data.data !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(data.data)) {
        throw invalid(`Invalid value at 'contents[${c}].parts[${p}].inline_data.data' (TYPE_BYTES), Base64 decoding failed`);
      }
      references++;
    });
  });
  if (references > 14) throw invalid('Too many images in the request: at most 14 are supported.');
  const config = body.generationConfig ?? {};
  for (const field of Object.keys(config))
    if (!GENERATION_CONFIG.has(field))
      throw invalid(`Invalid JSON payload received. Unknown name "${field}" at 'generation_config': Cannot find field.`);
  for (const modality of config.responseModalities ?? []) {
    if (!['TEXT', 'IMAGE'].includes(modality))
      throw invalid(
        `Invalid value at 'generation_config.response_modalities[0]' (type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.Modality), "${modality}"`,
      );
  }
  const imageConfig = config.imageConfig ?? {};
  for (const field of Object.keys(imageConfig))
    if (!IMAGE_CONFIG.has(field))
      throw invalid(`Invalid JSON payload received. Unknown name "${field}" at 'generation_config.image_config': Cannot find field.`);
  if (imageConfig.aspectRatio !== undefined && !model.ratios.includes(imageConfig.aspectRatio)) {
    throw invalid(`Unsupported aspect ratio: ${imageConfig.aspectRatio}. Supported values are ${model.ratios.join(', ')}.`);
  }
  if (imageConfig.imageSize !== undefined && !model.sizes.includes(imageConfig.imageSize)) {
    throw invalid(`Unsupported image size: ${imageConfig.imageSize}. Supported values are ${model.sizes.join(', ')}.`);
  }
  return { id: modelId, ...model, references };
}

async function respond(
  outcome: GeminiOutcome,
  model: ReturnType<typeof checkRequest>,
  body: any,
  call: number,
  res: http.ServerResponse,
): Promise<object | undefined> {
  const text = body.contents
    .flatMap((content: any) => content.parts.filter((part: any) => typeof part.text === 'string').map((part: any) => part.text))
    .join('\n');
  const promptCount = promptTokens(text) + model.references * INPUT_IMAGE_TOKENS;
  const promptUsage = {
    promptTokenCount: promptCount,
    totalTokenCount: promptCount,
    promptTokensDetails: [
      { modality: 'TEXT', tokenCount: promptTokens(text) },
      ...(model.references ? [{ modality: 'IMAGE', tokenCount: model.references * INPUT_IMAGE_TOKENS }] : []),
    ],
  };
  const envelope = (candidate: object | undefined, usage: object = promptUsage) => ({
    ...(candidate ? { candidates: [{ index: 0, ...candidate }] } : {}),
    usageMetadata: usage,
    modelVersion: model.id,
    responseId: `sim-${call}`,
  });
  switch (outcome.kind) {
    case 'hang':
      return new Promise((resolve) => res.on('close', () => resolve(undefined))); // never answers; ends when the client gives up
    case 'reset':
      res.socket?.destroy();
      return undefined;
    case 'malformed_json':
      res.writeHead(200, { 'content-type': 'application/json; charset=UTF-8' });
      res.end('{"candidates":[{"content":{"parts":[{"inlineData":');
      return undefined;
    case 'oversized':
      // Chunked, no content-length: the cap must hold while streaming, not only on a declared length.
      res.writeHead(200, { 'content-type': 'application/json; charset=UTF-8' });
      res.write('{"candidates":[],"padding":"');
      for (let sent = 0; sent < outcome.bytes; sent += 65536) res.write('A'.repeat(65536));
      res.end('"}');
      return undefined;
    case 'rate_limited':
      throw new GoogleError(
        429,
        'RESOURCE_EXHAUSTED',
        'You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.',
        [
          {
            '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
            violations: [
              {
                quotaMetric: 'generativelanguage.googleapis.com/generate_content_paid_tier_requests',
                quotaId: 'GenerateRequestsPerMinutePerProjectPerModel',
              },
            ],
          },
          {
            '@type': 'type.googleapis.com/google.rpc.Help',
            links: [{ description: 'Learn more about Gemini API quotas', url: 'https://ai.google.dev/gemini-api/docs/rate-limits' }],
          },
          { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: outcome.retryDelay ?? '34.4s' },
        ],
      );
    case 'error':
      throw new GoogleError(outcome.status, '', '', undefined, outcome.body);
    case 'prompt_blocked':
      return {
        promptFeedback: { blockReason: outcome.reason, ...(outcome.message ? { blockReasonMessage: outcome.message } : {}) },
        usageMetadata: promptUsage,
        modelVersion: model.id,
      };
    case 'finish':
      return envelope({ finishReason: outcome.reason, ...(outcome.message ? { finishMessage: outcome.message } : {}) });
    case 'text_only': {
      const reply = outcome.text ?? 'I can’t create that image, but I can describe it in words.';
      return envelope(
        { content: { role: 'model', parts: [{ text: reply }] }, finishReason: 'STOP' },
        { ...promptUsage, candidatesTokenCount: promptTokens(reply), totalTokenCount: promptCount + promptTokens(reply) },
      );
    }
    case 'image': {
      const modalities: string[] = body.generationConfig?.responseModalities ?? ['TEXT', 'IMAGE'];
      if (!modalities.includes('IMAGE')) return respond({ kind: 'text_only' }, model, body, call, res);
      const tier = body.generationConfig?.imageConfig?.imageSize ?? '1K';
      const ratio = body.generationConfig?.imageConfig?.aspectRatio ?? '1:1';
      const [width, height] = GEMINI_SIZES[tier][ratio].split('x').map(Number);
      const mimeType = outcome.mimeType ?? 'image/png';
      const count = outcome.images ?? 1;
      const imageParts = await Promise.all(
        Array.from({ length: count }, async (_, index) => ({
          inlineData: { mimeType, data: await solidImage(width, height, mimeType, call + index) },
          thoughtSignature: `sig-${call}-${index}`,
        })),
      );
      // Gemini 3 Pro thinks first and may attach a draft image to its thoughts; those parts are not the answer.
      const thoughts = model.thoughtTokens
        ? [
            { text: '**Composing the scene**', thought: true },
            { inlineData: { mimeType: 'image/png', data: await solidImage(64, 64, 'image/png', 255) }, thought: true },
          ]
        : [];
      const imageTokens = model.imageTokens[tier] * count;
      const usage = outcome.usageMetadata ?? {
        ...promptUsage,
        candidatesTokenCount: imageTokens + COMMENT_TOKENS,
        ...(model.thoughtTokens ? { thoughtsTokenCount: model.thoughtTokens } : {}),
        totalTokenCount: promptCount + imageTokens + COMMENT_TOKENS + model.thoughtTokens,
        candidatesTokensDetails: [
          { modality: 'IMAGE', tokenCount: imageTokens },
          { modality: 'TEXT', tokenCount: COMMENT_TOKENS },
        ],
      };
      return envelope(
        { content: { role: 'model', parts: [...thoughts, { text: 'Here is your image.' }, ...imageParts] }, finishReason: 'STOP' },
        usage,
      );
    }
  }
}
