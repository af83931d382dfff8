import { SseDecoder, isEventStream } from '../shared/openai-images-wire.ts';
import { deadlineSignal, upstreamRequest, type UpstreamResponse, type UpstreamTimeouts } from '../shared/http.ts';
import { pollSchedule } from '../shared/polling.ts';
import { ProviderError, type RouteTarget } from '../types.ts';
import { parseStatus } from './fal-api.ts';
import { PROVIDER } from './fal-request.ts';

/** Waiting for a queued fal job to complete: its status stream, with status polls as the fallback. */

const MAX_POLL_ERRORS = 3;
/** fal sends a comment every 15 s on a quiet status stream [fal docs]: silence this long means it is dead. */
const STREAM_IDLE_MS = 45_000;
/** Status events are a few hundred bytes (logs=0); a stream larger than this is dropped for polling. */
const STREAM_MAX_BYTES = 1024 * 1024;
/** Not in fal's own types, but listed by third-party schemas: handled defensively. */
const FAILED_STATUSES = new Set(['FAILED', 'ERROR', 'CANCELED', 'CANCELLED']);

/**
 * Until the job completes: fal's status stream tells at once; when the stream cannot be opened, breaks, or goes
 * quiet before a final status, status polls take over for the time left (the job is never submitted again).
 */
export async function waitForCompletion(
  urls: { statusUrl: string; streamUrl: string },
  auth: Record<string, string>,
  route: RouteTarget,
  timeouts: UpstreamTimeouts,
  signal: AbortSignal,
  cancel: () => void,
): Promise<void> {
  const schedule = pollSchedule(route.options, PROVIDER);
  if (route.options.status_stream !== false && (await followStatusStream(urls.streamUrl, auth, schedule.deadline, timeouts, signal)))
    return;
  const { statusUrl } = urls;
  let errors = 0;
  for (;;) {
    await schedule.next(signal, cancel);
    let response: UpstreamResponse;
    try {
      response = await upstreamRequest({
        url: statusUrl,
        headers: { ...auth, accept: 'application/json' },
        signal,
        timeouts,
        provider: PROVIDER,
      });
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (++errors > MAX_POLL_ERRORS) {
        throw new ProviderError('failed', `polling ${PROVIDER} failed${error instanceof ProviderError ? `: ${error.message}` : ''}`, {
          accepted: true,
          cause: error,
        });
      }
      continue;
    }
    if (response.status === 429 || response.status >= 500) {
      if (++errors > MAX_POLL_ERRORS)
        throw new ProviderError('failed', `polling ${PROVIDER} failed (HTTP ${response.status})`, { accepted: true });
      continue;
    }
    // 202 while queued or running, 200 once completed [R]: the body's status decides.
    if (response.status !== 200 && response.status !== 202) {
      throw new ProviderError('failed', `polling ${PROVIDER} failed (HTTP ${response.status})`, { accepted: true });
    }
    errors = 0;
    const status = parseStatus(response.json());
    if (status === 'COMPLETED') return;
    if (status !== undefined && FAILED_STATUSES.has(status)) throw jobFailed(status);
    // IN_QUEUE, IN_PROGRESS, or anything unknown: keep polling until the timeout.
  }
}

/**
 * fal's status stream (docs/providers.md, upstream wire contracts): `GET …/status/stream?logs=0` answers SSE whose events
 * are each `data: <status JSON>` (the status endpoint's fields), with a comment every 15 s, and closes after
 * COMPLETED. Events are decoded as they arrive. True as soon as one says COMPLETED; throws for a failed job or the
 * caller's abort; false when the stream is unusable (not a 200 event stream, connection error, too large), ends,
 * breaks or stays silent for STREAM_IDLE_MS without a final status, or `deadline` passes: the caller then polls.
 */
async function followStatusStream(
  url: string,
  auth: Record<string, string>,
  deadline: number,
  timeouts: UpstreamTimeouts,
  signal: AbortSignal,
): Promise<boolean> {
  let final: string | undefined;
  const decoder = new SseDecoder(({ data }) => {
    const status = parseStatus(jsonOrUndefined(data));
    if (final === undefined && status !== undefined && (status === 'COMPLETED' || FAILED_STATUSES.has(status))) final = status;
  });
  const limit = deadlineSignal(signal, Math.max(0, deadline - Date.now()));
  const silence = new AbortController();
  const idle = setTimeout(() => silence.abort(new DOMException('The status stream went quiet.', 'TimeoutError')), STREAM_IDLE_MS);
  try {
    await upstreamRequest({
      url,
      headers: { ...auth, accept: 'text/event-stream' },
      signal: AbortSignal.any([limit.signal, silence.signal]),
      timeouts,
      maxBytes: STREAM_MAX_BYTES,
      provider: PROVIDER,
      onChunk: (chunk, head) => {
        if (head.status !== 200 || !isEventStream(head.headers)) throw new ProviderError('unavailable', 'no status stream');
        idle.refresh();
        decoder.push(chunk);
        // The answer is in: stop reading rather than wait for fal to close the stream.
        if (final !== undefined) throw new ProviderError('failed', 'status stream done', { accepted: true });
      },
    });
    decoder.end();
  } catch {
    // Only the caller's abort ends the wait here; anything else gives the stream up (below) and polling decides.
    if (signal.aborted) throw signal.reason;
  } finally {
    clearTimeout(idle);
    limit.clear();
  }
  if (final === 'COMPLETED') return true;
  if (final !== undefined) throw jobFailed(final);
  return false;
}

function jobFailed(status: string): ProviderError {
  return new ProviderError('failed', `${PROVIDER} reported the job as ${status}`, { accepted: true });
}

function jsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
