import { Blob } from 'node:buffer';
import { FormData as UndiciFormData } from 'undici';
import { z } from 'zod';
import { probeBase64 } from '../../images/probe.ts';
import type { Base64Text } from '../../images/base64.ts';
import { base64TextField } from './large-json.ts';
import { ProviderError, type InputImage, type UpstreamUsage } from '../types.ts';
import {
  failureFromStatus,
  header,
  maxResponseBytes,
  sanitize,
  timeoutsFromOptions,
  upstreamRequest,
  type UpstreamRequest,
  type UpstreamResponse,
} from './http.ts';

/**
 * The OpenAI Images wire format, spoken by OpenAI itself (openai adapter) and by OpenAI-compatible servers
 * (openai-compatible adapter): endpoint URLs, the error envelope, the ImagesResponse body, token usage, SSE
 * decoding and the multipart edit form. Each adapter still writes its own request body.
 */

/**
 * The endpoint URL for a configured base URL. Rule: the base URL may be given with or without a trailing `/v1`
 * (`https://api.openai.com` and the SDKs' `https://api.openai.com/v1` both work); `/v1/images/<endpoint>` is
 * always appended to the base with that `/v1` removed. A path prefix before it (a proxy's `/openai`) and a query
 * string (`?api-version=`) are kept.
 */
export function imagesEndpoint(baseUrl: string, endpoint: 'generations' | 'edits'): string {
  const url = new URL(baseUrl);
  const prefix = url.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  url.pathname = `${prefix}/v1/images/${endpoint}`;
  return url.toString();
}

/**
 * POSTs an images request: the body as JSON to the generations endpoint or, when there are input images, as
 * multipart form fields to the edits endpoint (undici sets the multipart content-type with its boundary). Route
 * options `timeouts` and `max_response_bytes` apply. Once sent it counts as accepted: a synchronous generation
 * that timed out or broke may still be generated, and billed, upstream.
 */
export function postImagesRequest(input: {
  baseUrl: string;
  /** Auth and accept headers; content-type is set here. */
  headers: Record<string, string>;
  body: Record<string, unknown>;
  inputImages: InputImage[];
  routeOptions: Record<string, unknown>;
  signal: AbortSignal;
  provider: string;
  onChunk?: UpstreamRequest['onChunk'];
}): Promise<UpstreamResponse> {
  const edit = input.inputImages.length > 0;
  const headers = { ...input.headers };
  let payload: string | FormData;
  if (edit) {
    payload = editForm(input.body as Record<string, string | number | boolean | undefined>, input.inputImages);
  } else {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(input.body);
  }
  return upstreamRequest({
    url: imagesEndpoint(input.baseUrl, edit ? 'edits' : 'generations'),
    method: 'POST',
    headers,
    body: payload,
    signal: input.signal,
    timeouts: timeoutsFromOptions(input.routeOptions),
    maxBytes: maxResponseBytes(input.routeOptions),
    provider: input.provider,
    sentMeansAccepted: true,
    onChunk: input.onChunk,
  });
}

/** True for an absolute http(s) URL without credentials: the only base URLs an adapter accepts. */
export function isUsableBaseUrl(baseUrl: string | undefined): baseUrl is string {
  if (!baseUrl) return false;
  try {
    const url = new URL(baseUrl);
    return (url.protocol === 'https:' || url.protocol === 'http:') && !url.username && !url.password;
  } catch {
    return false;
  }
}

/** The `{error:{message,type,param,code}}` envelope, plus OpenAI's `moderation_details` on safety refusals. */
export interface ImagesApiError {
  message: string | undefined;
  type: string | undefined;
  code: string | undefined;
  param: string | undefined;
  moderationStage: string | undefined;
  categories: string[];
}

const errorEnvelopeSchema = z.object({
  error: z.object({
    message: z.string().nullish(),
    type: z.string().nullish(),
    code: z.union([z.string(), z.number()]).nullish(),
    param: z.string().nullish(),
    moderation_details: z
      .object({ moderation_stage: z.string().nullish(), categories: z.array(z.string()).nullish() })
      .nullish()
      .catch(undefined),
  }),
});

export function readApiError(body: unknown): ImagesApiError {
  const parsed = errorEnvelopeSchema.safeParse(body);
  const error = parsed.success ? parsed.data.error : undefined;
  return {
    message: error?.message ?? undefined,
    type: error?.type ?? undefined,
    code: error?.code === undefined || error.code === null ? undefined : String(error.code),
    param: error?.param ?? undefined,
    moderationStage: error?.moderation_details?.moderation_stage ?? undefined,
    categories: error?.moderation_details?.categories ?? [],
  };
}

/** OpenAI's current (`moderation_blocked`) and legacy dall-e (`content_policy_violation`) safety refusal codes. */
const REFUSAL_CODES = new Set(['moderation_blocked', 'content_policy_violation']);

export function isRefusal(status: number, error: ImagesApiError): boolean {
  if (status !== 400 && status !== 422) return false;
  return (error.code !== undefined && REFUSAL_CODES.has(error.code)) || error.moderationStage !== undefined;
}

/**
 * Maps a non-2xx answer to a ProviderError. `param` is translated to the caller's field names; a rejected `model`
 * is the operator's route configuration, never the caller's fault.
 */
export function imagesFailure(
  provider: string,
  response: UpstreamResponse,
  options: { paramNames?: Record<string, string>; refusalMessage: (error: ImagesApiError) => string },
): ProviderError {
  const error = readApiError(response.json());
  if (isRefusal(response.status, error)) return new ProviderError('refused', options.refusalMessage(error));
  if ((response.status === 400 || response.status === 422) && error.param === 'model') {
    return new ProviderError('misconfigured', `${provider} rejected the configured model: ${sanitize(error.message ?? '')}`);
  }
  const param = error.param === undefined ? undefined : (options.paramNames?.[error.param] ?? error.param);
  return failureFromStatus(provider, response, { message: error.message, param });
}

/** The fields of an ImagesResponse the adapters read. `usage` is validated separately, so bad counts never fail a response. */
const imagesResponseSchema = z.object({
  data: z.array(
    z.object({
      b64_json: base64TextField.nullish(),
      url: z.string().nullish(),
      revised_prompt: z.string().nullish(),
    }),
  ),
  output_format: z.string().nullish(),
  usage: z.unknown().optional(),
});

export type ImagesResponse = z.infer<typeof imagesResponseSchema>;

/** The parsed 2xx body, or a 'failed' error: the upstream accepted the work, so nothing may be retried. */
export function readImagesResponse(provider: string, response: UpstreamResponse): ImagesResponse {
  const parsed = imagesResponseSchema.safeParse(response.json());
  if (!parsed.success) {
    throw new ProviderError('failed', `${provider} sent a response that is not a valid images response`, { accepted: true });
  }
  if (parsed.data.data.length === 0) throw new ProviderError('failed', `${provider} answered without any image`, { accepted: true });
  return parsed.data;
}

/** The media type of base64 image bytes, read from their header; `declared` (an output_format) when unreadable. */
export function mediaTypeOf(base64: Base64Text, declared: string | undefined): string {
  const probe = probeBase64(base64);
  if (probe) return `image/${probe.format}`;
  return `image/${declared === 'jpg' ? 'jpeg' : (declared ?? 'png')}`;
}

/**
 * Token usage as OpenAI reports it (`input_tokens`, `input_tokens_details.image_tokens`, `output_tokens`,
 * `output_tokens_details.image_tokens`). Without output details every output token is an image token: these are
 * image endpoints, and streamed `completed` events carry no output details. Counts that are not non-negative safe
 * integers below 1e9, or details larger than their totals, make the whole usage unusable (the list price applies).
 */
export function readTokenUsage(raw: unknown): UpstreamUsage | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const usage = raw as Record<string, unknown>;
  const inputDetails = objectOrEmpty(usage.input_tokens_details);
  const outputDetails = objectOrEmpty(usage.output_tokens_details);
  const values = [usage.input_tokens, inputDetails.image_tokens, usage.output_tokens, outputDetails.image_tokens];
  if (values.some((value) => value !== undefined && value !== null && count(value) === undefined)) return undefined;
  const inputTokens = count(usage.input_tokens);
  const inputImageTokens = count(inputDetails.image_tokens);
  const outputTokens = count(usage.output_tokens);
  const outputImageTokens = count(outputDetails.image_tokens) ?? outputTokens;
  if (inputTokens === undefined && outputTokens === undefined) return undefined;
  if (inputImageTokens !== undefined && inputImageTokens > (inputTokens ?? 0)) return undefined;
  if (outputImageTokens !== undefined && outputImageTokens > (outputTokens ?? 0)) return undefined;
  const result: UpstreamUsage = {};
  if (inputTokens !== undefined) result.inputTokens = inputTokens;
  if (inputImageTokens !== undefined) result.inputImageTokens = inputImageTokens;
  if (outputTokens !== undefined) result.outputTokens = outputTokens;
  if (outputImageTokens !== undefined) result.outputImageTokens = outputImageTokens;
  return result;
}

function objectOrEmpty(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
}

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value < 1e9 ? value : undefined;
}

/** One server-sent event: its `event:` name (if any) and its `data:` lines joined by newlines. */
export interface ServerSentEvent {
  event: string | undefined;
  data: string;
}

/**
 * Incremental SSE decoder (WHATWG rules: `field: value` lines, `:` comments, a blank line dispatches, LF or CRLF).
 * Only the new chunk is scanned for line ends, so multi-megabyte base64 `data:` lines cost linear time.
 */
export class SseDecoder {
  private partial = '';
  private event: string | undefined;
  private data: string[] = [];
  private readonly text = new TextDecoder();

  constructor(private readonly onEvent: (event: ServerSentEvent) => void) {}

  push(chunk: Buffer): void {
    const lines = this.text.decode(chunk, { stream: true }).split('\n');
    lines[0] = this.partial + lines[0];
    this.partial = lines.pop()!;
    for (const line of lines) this.line(line.endsWith('\r') ? line.slice(0, -1) : line);
  }

  /** Flushes a last event that was not followed by a blank line. */
  end(): void {
    if (this.partial) this.line(this.partial);
    this.partial = '';
    this.line('');
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0) this.onEvent({ event: this.event, data: this.data.join('\n') });
      this.event = undefined;
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
  }
}

/** True when the response is an event stream (as opposed to a JSON answer from a server that ignored `stream`). */
export function isEventStream(headers: UpstreamResponse['headers']): boolean {
  return (header(headers, 'content-type') ?? '').toLowerCase().startsWith('text/event-stream');
}

/**
 * The multipart body of `/v1/images/edits`: scalar fields as strings (undefined skipped), then one `image[]` part
 * per reference image, in order, with its media type and a filename. Built with undici's FormData (the client
 * upstreamRequest uses encodes it and sets the boundary), typed as the global FormData upstreamRequest declares.
 */
export function editForm(fields: Record<string, string | number | boolean | undefined>, images: InputImage[]): FormData {
  const form = new UndiciFormData();
  for (const [name, value] of Object.entries(fields)) {
    if (value !== undefined) form.append(name, String(value));
  }
  images.forEach((image, index) => {
    const extension = image.mediaType === 'image/jpeg' ? 'jpg' : image.mediaType.slice('image/'.length);
    form.append('image[]', new Blob([image.bytes], { type: image.mediaType }), image.filename ?? `image-${index + 1}.${extension}`);
  });
  return form as unknown as FormData;
}

/** Multipart fields carry text only: scalars pass, anything else is reported back as not forwarded. */
export function isFormScalar(value: unknown): value is string | number | boolean {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}
