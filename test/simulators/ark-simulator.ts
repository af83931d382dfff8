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
 * BytePlus ModelArk image generation, as research/providers.md §4b describes it: synchronous
 * `POST /api/v3/images/generations` with a Bearer key → `{model, created, data:[{b64_json|url, size}],
 * usage:{generated_images, output_tokens, total_tokens}}`; errors `{"error":{"code","message"}}`.
 */
export type ArkFault =
  | 'http500'
  | 'http429'
  | 'input_sensitive'
  | 'output_sensitive'
  | 'invalid_size'
  | 'no_image'
  | 'item_error'
  | 'usage_lies'
  | TransportFault;

const MODELS = new Set(['seedream-4-5-251128', 'seedream-4-0-250828']);
const MIN_PIXELS = 2560 * 1440;
const MAX_PIXELS = 4096 * 4096;

export class ArkSimulator {
  readonly key = 'sk-sim';
  fault: ArkFault | undefined;
  /** The base64 of every image answered, in order. */
  sentImages: string[] = [];
  private server!: RecordingServer;
  private tones = 0;

  get url(): string {
    return this.server.url;
  }
  get requests(): RecordedRequest[] {
    return this.server.requests;
  }
  calls(): RecordedRequest[] {
    return this.requests.filter((request) => request.pathname === '/api/v3/images/generations');
  }

  async start(): Promise<this> {
    this.server = await startRecordingServer((request, response) => this.handle(request, response));
    return this;
  }

  reset(): void {
    this.requests.length = 0;
    this.fault = undefined;
    this.sentImages = [];
  }

  close(): Promise<void> {
    return this.server.close();
  }

  private async handle(request: RecordedRequest, response: ServerResponse): Promise<void> {
    if (request.method !== 'POST' || request.pathname !== '/api/v3/images/generations')
      return error(response, 404, 'NotFound', 'The requested resource was not found.');
    if (request.headers.authorization !== `Bearer ${this.key}`) {
      return error(response, 401, 'AuthenticationError', 'The API key or AK/SK in the request is missing or invalid.');
    }
    switch (this.fault) {
      case 'http500':
        return error(response, 500, 'InternalServiceError', 'The service encountered an unexpected internal error.');
      case 'http429':
        return error(response, 429, 'RateLimitExceeded.EndpointRPMExceeded', 'Your requests have exceeded the RPM limit.', {
          'retry-after': '1',
        });
      case 'hang':
      case 'reset':
      case 'malformed':
      case 'oversized':
        return playTransportFault(this.fault, response);
    }
    const body = request.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body))
      return error(response, 400, 'InvalidParameter', 'The request body is not valid JSON.');
    if (!MODELS.has(body.model))
      return error(
        response,
        404,
        'InvalidEndpointOrModel.NotFound',
        `The model or endpoint ${String(body.model)} does not exist or you do not have access to it.`,
      );
    const problem = validate(body);
    if (problem || this.fault === 'invalid_size') {
      return error(
        response,
        400,
        'InvalidParameter',
        problem ?? 'The parameter `size` specified in the request is not valid: the image is too large.',
      );
    }
    if (this.fault === 'input_sensitive') {
      return error(
        response,
        400,
        'InputTextSensitiveContentDetected',
        'The request failed because the input text may contain sensitive information.',
      );
    }
    if (this.fault === 'output_sensitive') {
      return error(
        response,
        400,
        'OutputImageSensitiveContentDetected',
        'The request failed because the output image may contain sensitive information.',
      );
    }
    const created = Math.floor(Date.now() / 1000);
    if (this.fault === 'no_image')
      return sendJson(response, 200, {
        model: body.model,
        created,
        data: [],
        usage: { generated_images: 0, output_tokens: 0, total_tokens: 0 },
      });
    if (this.fault === 'item_error') {
      return sendJson(response, 200, {
        model: body.model,
        created,
        data: [{ error: { code: 'OutputImageSensitiveContentDetected', message: 'The output image may contain sensitive information.' } }],
        usage: { generated_images: 0 },
      });
    }
    const [width, height] = sizeOf(body.size ?? '2048x2048');
    const tone = ++this.tones;
    const bytes = await solidImage(width, height, 'jpeg', tone);
    this.sentImages.push(bytes.toString('base64'));
    const item =
      body.response_format === 'b64_json'
        ? { b64_json: bytes.toString('base64'), size: `${width}x${height}` }
        : { url: `${this.url}/ark-content/${tone}.jpeg?X-Tos-Expires=86400`, size: `${width}x${height}` };
    const tokens = Math.round((width * height) / 256);
    sendJson(response, 200, {
      model: body.model,
      created,
      data: [item],
      usage: { generated_images: this.fault === 'usage_lies' ? 5 : 1, output_tokens: tokens, total_tokens: tokens },
    });
  }
}

function error(response: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  sendJson(response, status, { error: { code, message, param: '', type: status === 401 ? 'Unauthorized' : 'BadRequest' } }, headers);
}

/** Ark's checks for Seedream 4.5 [V3 gateway code; R for the exact messages]. */
function validate(body: Record<string, any>): string | undefined {
  const bad = (field: string, why: string) => `The parameter \`${field}\` specified in the request is not valid: ${why}.`;
  if (typeof body.prompt !== 'string' || body.prompt === '') return bad('prompt', 'it is required');
  if (body.size !== undefined) {
    if (typeof body.size !== 'string') return bad('size', 'expected a string');
    if (body.size !== '2K' && body.size !== '4K') {
      const match = /^(\d+)x(\d+)$/.exec(body.size);
      if (!match) return bad('size', 'expected 2K, 4K or WIDTHxHEIGHT');
      const [width, height] = [Number(match[1]), Number(match[2])];
      if (width * height < MIN_PIXELS || width * height > MAX_PIXELS)
        return bad('size', `total pixels must be within [${MIN_PIXELS}, ${MAX_PIXELS}]`);
      if (width / height > 16 || height / width > 16) return bad('size', 'aspect ratio must be within [1/16, 16]');
    }
  }
  if (body.response_format !== undefined && !['url', 'b64_json'].includes(body.response_format))
    return bad('response_format', 'expected url or b64_json');
  if (body.watermark !== undefined && typeof body.watermark !== 'boolean') return bad('watermark', 'expected a boolean');
  if (body.sequential_image_generation !== undefined && !['auto', 'disabled'].includes(body.sequential_image_generation)) {
    return bad('sequential_image_generation', 'expected auto or disabled');
  }
  if (body.image !== undefined) {
    const images = Array.isArray(body.image) ? body.image : [body.image];
    if (images.length > 14) return bad('image', 'at most 14 reference images');
    if (images.some((image: unknown) => typeof image !== 'string' || !/^(data:image\/(png|jpeg|webp);base64,|https?:\/\/)/.test(image))) {
      return bad('image', 'expected a URL or a base64 data URI');
    }
  }
  return undefined;
}

function sizeOf(size: string): [number, number] {
  if (size === '2K') return [2048, 2048];
  if (size === '4K') return [4096, 4096];
  const [width, height] = size.split('x').map(Number);
  return [width, height];
}
