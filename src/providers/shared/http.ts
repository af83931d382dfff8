import { isAscii } from 'node:buffer';
import { Agent, request, errors as undiciErrors, type Dispatcher } from 'undici';
import { ProviderError } from '../types.ts';
import { parseUpstreamJson } from './large-json.ts';

export { sleep } from '../../domain/sleep.ts';

/**
 * Upstream HTTP for every adapter: undici with explicit timeouts (Node's defaults would cut a slow generation
 * off at 300 s, or wait forever on a dead peer), a response size cap, and failures classified for the
 * pipeline's retry/failover rules. Adapters never see undici's error types.
 */
export interface UpstreamTimeouts {
  /** TCP+TLS connect. */
  connectMs: number;
  /** Until the response headers arrive (the first byte). */
  firstByteMs: number;
  /** The whole exchange, body included. */
  totalMs: number;
}

export const DEFAULT_TIMEOUTS: UpstreamTimeouts = { connectMs: 10_000, firstByteMs: 270_000, totalMs: 280_000 };
export const MAX_UPSTREAM_RESPONSE_BYTES = 64 * 1024 * 1024;

const agents = new Map<string, Agent>();

/** One keep-alive pool per timeout profile, shared by every request using it. */
function agentFor(timeouts: UpstreamTimeouts): Agent {
  const key = `${timeouts.connectMs}/${timeouts.firstByteMs}/${timeouts.totalMs}`;
  let agent = agents.get(key);
  if (!agent) {
    agent = new Agent({
      connect: { timeout: timeouts.connectMs },
      headersTimeout: timeouts.firstByteMs,
      bodyTimeout: timeouts.totalMs,
      keepAliveTimeout: 30_000,
      // No connection cap here: a capped pool queues requests silently, while their callers hold credit. The cap is
      // each route's max_connections, enforced before a call starts (services/billed-work.ts), answered 429 when full.
    });
    agents.set(key, agent);
  }
  return agent;
}

export interface UpstreamRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  headers?: Record<string, string>;
  body?: string | Buffer | FormData;
  signal: AbortSignal;
  timeouts?: Partial<UpstreamTimeouts>;
  maxBytes?: number;
  /** A human name for messages and logs, e.g. "OpenAI". */
  provider: string;
  /**
   * Whether a timeout or reset after the request was sent may mean the upstream already accepted (and will bill)
   * the work. True for synchronous generation calls; false for idempotent reads such as polls.
   */
  sentMeansAccepted?: boolean;
  /**
   * Called with each body chunk as it arrives (streamed answers such as SSE), before the whole body is read.
   * May throw a ProviderError to end the exchange (e.g. an error event in the stream).
   */
  onChunk?: (chunk: Buffer, head: { status: number; headers: UpstreamResponse['headers'] }) => void;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text(): string;
  /** Parsed JSON, or undefined when the body is not JSON. */
  json(): unknown;
}

export async function upstreamRequest(options: UpstreamRequest): Promise<UpstreamResponse> {
  const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  const deadline = deadlineSignal(options.signal, timeouts.totalMs);
  try {
    return await requestWithin(options, timeouts, deadline.signal);
  } finally {
    deadline.clear();
  }
}

/**
 * Ends an upstream response body we will not read (an error status, a redirect, too large). undici makes a body
 * destroyed unread emit 'error' (UND_ERR_ABORTED, RequestAbortedError); with no listener that error is uncaught and
 * ends the process, so a listener is attached first. Safe to call on a body already ended or destroyed.
 */
export function discardBody(body: Dispatcher.ResponseData['body']): void {
  body.on('error', ignoreError);
  if (!body.destroyed) body.destroy();
}

function ignoreError(): void {}

/**
 * `parent` aborted, or `ms` passed. Our own timer rather than AbortSignal.timeout(): on Node 20 a timeout signal
 * referenced only from AbortSignal.any() can be garbage-collected and then never fires.
 */
export function deadlineSignal(parent: AbortSignal, ms: number): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException('The upstream deadline passed.', 'TimeoutError')), ms);
  return { signal: AbortSignal.any([parent, controller.signal]), clear: () => clearTimeout(timer) };
}

async function requestWithin(options: UpstreamRequest, timeouts: UpstreamTimeouts, signal: AbortSignal): Promise<UpstreamResponse> {
  const maxBytes = options.maxBytes ?? MAX_UPSTREAM_RESPONSE_BYTES;
  let response: Dispatcher.ResponseData;
  try {
    response = await request(options.url, {
      method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
      headers: options.headers,
      body: options.body as Dispatcher.DispatchOptions['body'],
      signal,
      dispatcher: agentFor(timeouts),
    });
  } catch (error) {
    throw classifyTransportError(error, options, false);
  }
  const declared = Number(response.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    discardBody(response.body);
    throw new ProviderError('failed', `${options.provider} sent a response larger than ${maxBytes} bytes.`, { accepted: true });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body) {
      size += chunk.length;
      if (size > maxBytes) {
        throw new ProviderError('failed', `${options.provider} sent a response larger than ${maxBytes} bytes.`, { accepted: true });
      }
      chunks.push(chunk as Buffer);
      options.onChunk?.(chunk as Buffer, { status: response.statusCode, headers: response.headers });
    }
  } catch (error) {
    // Leaving the loop early (too large, or onChunk ended it) abandons the body: end it so it cannot error unheard.
    discardBody(response.body);
    if (error instanceof ProviderError) throw error;
    throw classifyTransportError(error, options, true);
  }
  const body = Buffer.concat(chunks, size);
  let parsed: unknown = null;
  let parsedOnce = false;
  return {
    status: response.statusCode,
    headers: response.headers,
    body,
    text: () => decodeBody(body),
    json: () => {
      if (!parsedOnce) {
        parsedOnce = true;
        try {
          parsed = parseUpstreamJson(body, isAscii(body));
        } catch {
          parsed = undefined;
        }
      }
      return parsed;
    },
  };
}

function classifyTransportError(error: unknown, options: UpstreamRequest, afterHeaders: boolean): ProviderError {
  if (options.signal.aborted) {
    return new ProviderError('failed', 'cancelled', { accepted: options.sentMeansAccepted ?? false, cause: options.signal.reason });
  }
  const code = (error as { code?: string })?.code ?? '';
  const name = (error as Error)?.name ?? '';
  const beforeSending =
    error instanceof undiciErrors.ConnectTimeoutError ||
    ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'].includes(code);
  if (beforeSending) {
    return new ProviderError('unavailable', `could not connect to ${options.provider}`, { cause: error });
  }
  // The request went out: a synchronous generation may have been accepted, so it must not be sent again.
  const accepted = options.sentMeansAccepted ?? false;
  const timedOut =
    error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.BodyTimeoutError || name === 'TimeoutError';
  const what = timedOut
    ? `${options.provider} did not answer in time`
    : `the connection to ${options.provider} failed${afterHeaders ? ' mid-response' : ''}`;
  return new ProviderError(accepted ? 'failed' : 'unavailable', what, { accepted, cause: error });
}

/**
 * Upstream bodies are mostly multi-megabyte ASCII (base64 inside JSON). For ASCII, latin1 decoding gives the same
 * string as UTF-8 at memcpy speed (measured: ~2.5 ms saved per 2 MB body); anything else is decoded as UTF-8.
 */
function decodeBody(body: Buffer): string {
  return isAscii(body) ? body.toString('latin1') : body.toString('utf8');
}

/** Retry-After as seconds (number or HTTP date), clamped to 1–60. */
export function retryAfterSeconds(headers: UpstreamResponse['headers']): number | undefined {
  const raw = headers['retry-after'];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (!value) return undefined;
  const seconds = /^\d+(\.\d+)?$/.test(value) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  if (!Number.isFinite(seconds)) return undefined;
  return Math.min(60, Math.max(1, Math.ceil(seconds)));
}

/**
 * The common HTTP-status part of error mapping; adapters add their own body parsing for messages and params.
 * 429 and 5xx on submit happen before acceptance (safe to retry or fail over); auth faults are the operator's.
 */
export function failureFromStatus(
  provider: string,
  response: UpstreamResponse,
  detail: { message?: string; param?: string; refused?: boolean } = {},
): ProviderError {
  const { status } = response;
  const message = detail.message ? sanitize(detail.message) : `${provider} answered HTTP ${status}`;
  if (detail.refused) return new ProviderError('refused', message);
  if (status === 429) return new ProviderError('rate_limited', message, { retryAfterSeconds: retryAfterSeconds(response.headers) });
  if (status === 401 || status === 403 || status === 402 || status === 404) {
    return new ProviderError('misconfigured', `${provider} refused our credentials or route (HTTP ${status}): ${message}`);
  }
  if (status >= 500) return new ProviderError('unavailable', message, { retryAfterSeconds: retryAfterSeconds(response.headers) });
  if (status === 400 || status === 422) return new ProviderError('invalid_request', message, { param: detail.param });
  return new ProviderError('failed', message);
}

/** Upstream messages reach callers only trimmed and without anything that looks like a URL or a key. */
export function sanitize(message: string): string {
  return message
    .replace(/https?:\/\/\S+/g, '[url]')
    .replace(/\b(sk|key|bearer)[-_ ][A-Za-z0-9._-]{8,}/gi, '[redacted]')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 300);
}

export function header(headers: UpstreamResponse['headers'], name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** Per-route timeouts from the catalog's route `options.timeouts` ({connect_ms, first_byte_ms, total_ms}). */
export function timeoutsFromOptions(options: Record<string, unknown>): UpstreamTimeouts {
  const raw = (options.timeouts ?? {}) as Record<string, unknown>;
  const pick = (name: string, fallback: number) => {
    const value = raw[name];
    return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback;
  };
  return {
    connectMs: pick('connect_ms', DEFAULT_TIMEOUTS.connectMs),
    firstByteMs: pick('first_byte_ms', DEFAULT_TIMEOUTS.firstByteMs),
    totalMs: pick('total_ms', DEFAULT_TIMEOUTS.totalMs),
  };
}

/** The route's `options.max_response_bytes` (a positive integer), else undefined: upstreamRequest's default cap. */
export function maxResponseBytes(options: Record<string, unknown>): number | undefined {
  const value = options.max_response_bytes;
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** The origin of a configured base URL, trusted for result downloads (see safe-download.ts). */
export function originOf(baseUrl: string | undefined): string[] {
  if (!baseUrl) return [];
  try {
    return [new URL(baseUrl).origin];
  } catch {
    return [];
  }
}
