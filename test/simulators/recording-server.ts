import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';

/**
 * The plumbing the BFL, fal, Ark and Gemini simulators share: a real HTTP server on 127.0.0.1:0 that records every
 * request (method, path, headers, parsed body) before its handler answers, plus the fault switches every
 * simulator offers and small real images. Test code only.
 */
export interface RecordedRequest {
  method: string;
  /** Path with query string, e.g. `/v1/get_result?id=abc`. */
  path: string;
  pathname: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** Parsed JSON when the body is JSON, else the raw text ('' when empty). */
  body: any;
}

export type Handler = (request: RecordedRequest, response: ServerResponse, raw: IncomingMessage) => void | Promise<void>;

export interface RecordingServer {
  url: string;
  port: number;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export async function startRecordingServer(handler: Handler): Promise<RecordingServer> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer(async (raw, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of raw) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : '';
    } catch {
      // not JSON: kept as text for the handler to reject
    }
    const url = new URL(raw.url ?? '/', 'http://simulator');
    const recorded: RecordedRequest = {
      method: raw.method ?? 'GET',
      path: url.pathname + url.search,
      pathname: url.pathname,
      query: url.searchParams,
      headers: raw.headers,
      body,
    };
    requests.push(recorded);
    try {
      await handler(recorded, response, raw);
    } catch (error) {
      if (!response.headersSent) sendJson(response, 500, { detail: `simulator error: ${(error as Error).message}` });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  response.end(text);
}

/**
 * The transport faults every simulator can play instead of an answer:
 * - hang: headers never come (the client's first-byte timeout must fire);
 * - reset: the socket is destroyed mid-request;
 * - malformed: HTTP 200 with a body that is not JSON;
 * - oversized: HTTP 200 declaring a 70 MB body (above the 64 MB cap), then cut off.
 */
export type TransportFault = 'hang' | 'reset' | 'malformed' | 'oversized';

export function playTransportFault(fault: TransportFault, response: ServerResponse): void {
  switch (fault) {
    case 'hang':
      return;
    case 'reset':
      response.socket?.destroy();
      return;
    case 'malformed':
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"id": "unterminated');
      return;
    case 'oversized':
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': String(70 * 1024 * 1024) });
      response.write('{"padding":"');
      setTimeout(() => response.socket?.destroy(), 50);
  }
}

/** A real, small image of exactly width × height (a flat colour picked from `tone`, so images differ). */
export async function solidImage(width: number, height: number, format: 'png' | 'jpeg', tone: number): Promise<Buffer> {
  const background = { r: (tone * 67) % 256, g: (tone * 131 + 40) % 256, b: (tone * 29 + 90) % 256 };
  const image = sharp({ create: { width, height, channels: 3, background } });
  return format === 'png' ? image.png({ compressionLevel: 1 }).toBuffer() : image.jpeg({ quality: 60 }).toBuffer();
}

/** Resolves when `check` passes (polled), or fails after `ms`: for asserting on asynchronous upstream effects. */
export async function eventually(check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
