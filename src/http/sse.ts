import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';

/**
 * Takes the response over from Fastify and starts an event stream on it. The headers Fastify's hooks already set on
 * the reply (x-request-id, the CORS allow-origin and expose-headers) go out with it: a hijacked reply bypasses them,
 * and without them a browser caller could not read the stream at all.
 */
export function openSse(reply: FastifyReply, headers: Record<string, string>): SseWriter {
  reply.hijack();
  return new SseWriter(reply.raw, { ...(reply.getHeaders() as OutgoingHttpHeaders), ...headers });
}

/**
 * A Server-Sent Events writer. Image streams send `event: <type>` + one `data:` JSON line; chat streams send bare
 * `data:` lines (chat.completion.chunk objects, then `data: [DONE]`), as OpenAI does. The OpenAI SDKs' iterators read
 * both; keepalives are comment lines (an `event:` without data kills their parsers).
 */
export class SseWriter {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly response: ServerResponse,
    headers: OutgoingHttpHeaders,
  ) {
    response.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // Proxies such as nginx buffer responses unless told not to; buffering would hold back keepalives.
      'x-accel-buffering': 'no',
    });
    response.flushHeaders();
    response.on('close', () => this.stopKeepalive());
  }

  /** `: keepalive` every interval until stopped. */
  startKeepalive(intervalMs: number): void {
    this.timer = setInterval(() => this.write(': keepalive\n\n'), intervalMs);
  }

  stopKeepalive(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** `data` is pre-serialised JSON (a single line; JSON.stringify never emits raw newlines). */
  event(type: string, data: string): void {
    this.write(`event: ${type}\ndata: ${data}\n\n`);
  }

  /**
   * An event whose JSON is given as byte parts (one line in all), for image payloads: the multi-megabyte base64 goes
   * to the socket as the bytes it arrived in, never as a string. Returns the frame's parts.
   */
  eventParts(type: string, data: Buffer[]): Buffer[] {
    const frame = [Buffer.from(`event: ${type}\ndata: `), ...data, Buffer.from('\n\n')];
    if (this.isOpen) {
      this.response.cork();
      for (const part of frame) this.response.write(part);
      process.nextTick(() => this.response.uncork());
    }
    return frame;
  }

  /** A bare `data:` frame: pre-serialised JSON on one line, or `[DONE]`. */
  data(data: string): void {
    this.write(`data: ${data}\n\n`);
  }

  end(): void {
    this.stopKeepalive();
    if (!this.closed && !this.response.writableEnded) this.response.end();
    this.closed = true;
  }

  get isOpen(): boolean {
    return !this.closed && !this.response.destroyed && !this.response.writableEnded;
  }

  private write(chunk: string): void {
    if (this.isOpen) this.response.write(chunk);
  }
}
