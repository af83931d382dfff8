/**
 * A programmable faulty upstream: an HTTP proxy in front of a provider simulator (test/simulators) that passes
 * everything through, except the requests a rule matches, which it answers with a fault: a status (3xx/4xx/5xx),
 * a redirect, a reset before or in the middle of the body, a hang, a delay, a wrong content type, a truncated or
 * oversized body, a trickled body, or the upstream's images swapped for invalid bytes or a decompression bomb.
 *
 * JSON answers are rewritten so the simulator's origin reads as the proxy's: result links, polling and status URLs
 * come back through the proxy too, so submit, poll and download can each be faulted. Test code only.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import zlib from 'node:zlib';

export type FaultAction =
  | { kind: 'status'; status: number; body?: string; contentType?: string; headers?: Record<string, string> }
  | { kind: 'redirect'; status?: number; location: string }
  /** The connection is closed before any response. */
  | { kind: 'reset' }
  /** The real status and headers, half the body, then the connection is destroyed. */
  | { kind: 'reset-mid-body' }
  /** No answer at all (the connection stays open until the caller gives up). */
  | { kind: 'hang' }
  /** Headers at once, then nothing. */
  | { kind: 'hang-after-headers' }
  | { kind: 'delay'; ms: number }
  /** Held until release() is called, then passed through. */
  | { kind: 'hold' }
  | { kind: 'content-type'; type: string }
  /** Half the body, declared complete (content-length of the half). */
  | { kind: 'truncate' }
  /** The real body followed by `bytes` of padding (not whitespace: JSON with it is no longer JSON). */
  | { kind: 'oversize'; bytes: number }
  /** The real body in `chunkBytes` pieces every `intervalMs`. */
  | { kind: 'trickle'; chunkBytes: number; intervalMs: number }
  /** Every image (base64 in JSON or SSE, or an image body) replaced by a PNG whose header claims 100000x100000. */
  | { kind: 'bomb' }
  /** Every image replaced by bytes that are no image. */
  | { kind: 'not-an-image' };

export interface FaultRule {
  method?: string;
  /** Matched against the path and query. */
  path: RegExp;
  action: FaultAction;
  /** How many matching requests it affects (default: all until cleared). */
  times?: number;
}

export class FaultProxy {
  url = '';
  private server?: http.Server;
  private rules: FaultRule[] = [];
  private readonly sockets = new Set<Socket>();
  private held: Array<() => void> = [];
  /** Every request that reached the proxy, `METHOD path`. */
  readonly seen: string[] = [];

  constructor(private readonly target: string) {}

  async start(): Promise<this> {
    this.server = http.createServer((request, response) => void this.handle(request, response).catch(() => response.destroy()));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Replaces the rules (none = a transparent proxy). */
  set(...rules: FaultRule[]): void {
    this.rules = rules.map((rule) => ({ ...rule }));
  }

  /** Lets every request held by a `hold` rule through. */
  release(): void {
    for (const go of this.held.splice(0)) go();
  }

  clear(): void {
    this.rules = [];
    this.seen.length = 0;
  }

  async close(): Promise<void> {
    this.release();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  private take(method: string, path: string): FaultAction | undefined {
    const rule = this.rules.find(
      (candidate) => (!candidate.method || candidate.method === method) && candidate.path.test(path) && candidate.times !== 0,
    );
    if (!rule) return undefined;
    if (rule.times !== undefined) rule.times--;
    return rule.action;
  }

  private async handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const path = request.url ?? '/';
    this.seen.push(`${request.method} ${path}`);
    const action = this.take(request.method ?? 'GET', path);
    const body = await readAll(request);
    if (action?.kind === 'reset') return void request.socket.destroy();
    if (action?.kind === 'hang') return;
    if (action?.kind === 'status') {
      response.writeHead(action.status, { 'content-type': action.contentType ?? 'application/json', ...action.headers });
      return void response.end(
        action.body ?? JSON.stringify({ error: { message: `simulated HTTP ${action.status}`, type: 'server_error' } }),
      );
    }
    if (action?.kind === 'redirect') {
      return void response.writeHead(action.status ?? 302, { location: action.location }).end('redirecting');
    }
    if (action?.kind === 'delay') await new Promise((resolve) => setTimeout(resolve, action.ms));
    if (action?.kind === 'hold') await new Promise<void>((resolve) => this.held.push(resolve));

    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (
        typeof value === 'string' &&
        !['host', 'content-length', 'connection', 'keep-alive', 'transfer-encoding', 'expect'].includes(name)
      )
        headers[name] = value;
    }
    const upstream = await fetch(`${this.target}${path}`, {
      method: request.method,
      headers,
      body: body.length ? new Uint8Array(body) : undefined,
      redirect: 'manual',
    }).catch(() => undefined);
    if (!upstream) return void request.socket.destroy();
    const type = upstream.headers.get('content-type') ?? '';
    const streaming = type.startsWith('text/event-stream');
    const outHeaders: Record<string, string> = {};
    upstream.headers.forEach((value, name) => {
      if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection', 'keep-alive'].includes(name)) outHeaders[name] = value;
    });
    if (outHeaders.location) outHeaders.location = outHeaders.location.replaceAll(this.target, this.url);

    if (streaming && !action) {
      // Server-sent events pass through as they arrive (streams are faulted as a whole, below).
      response.writeHead(upstream.status, outHeaders);
      for await (const chunk of upstream.body ?? []) response.write(this.rewrite(Buffer.from(chunk), type));
      return void response.end();
    }
    let payload = this.rewrite(Buffer.from(await upstream.arrayBuffer()), type);
    if (action?.kind === 'bomb' || action?.kind === 'not-an-image')
      payload = swapImages(payload, type, action.kind === 'bomb' ? BOMB_PNG : NOT_AN_IMAGE);
    if (action?.kind === 'content-type') outHeaders['content-type'] = action.type;

    switch (action?.kind) {
      case 'reset-mid-body':
        response.writeHead(upstream.status, { ...outHeaders, 'content-length': String(payload.length) });
        response.write(payload.subarray(0, Math.floor(payload.length / 2)));
        return void setTimeout(() => request.socket.destroy(), 20);
      case 'hang-after-headers':
        response.writeHead(upstream.status, outHeaders);
        return void response.flushHeaders();
      case 'truncate': {
        const half = payload.subarray(0, Math.floor(payload.length / 2));
        return void response.writeHead(upstream.status, { ...outHeaders, 'content-length': String(half.length) }).end(half);
      }
      case 'oversize': {
        response.writeHead(upstream.status, outHeaders);
        response.write(payload);
        const block = Buffer.alloc(64 * 1024, 0x78);
        let left = action.bytes;
        const pump = () => {
          while (left > 0 && !response.destroyed) {
            left -= block.length;
            if (!response.write(block)) return void response.once('drain', pump);
          }
          if (!response.destroyed) response.end();
        };
        response.on('error', () => {});
        return pump();
      }
      case 'trickle': {
        response.writeHead(upstream.status, outHeaders);
        response.on('error', () => {});
        for (let offset = 0; offset < payload.length && !response.destroyed; offset += action.chunkBytes) {
          response.write(payload.subarray(offset, offset + action.chunkBytes));
          await new Promise((resolve) => setTimeout(resolve, action.intervalMs));
        }
        return void response.end();
      }
      default:
        response.writeHead(upstream.status, { ...outHeaders, 'content-length': String(payload.length) });
        response.end(payload);
    }
  }

  /** The simulator's origin reads as the proxy's in JSON and SSE text. */
  private rewrite(body: Buffer, type: string): Buffer {
    if (!/json|event-stream|text/.test(type)) return body;
    const text = body.toString('utf8');
    return text.includes(this.target) ? Buffer.from(text.replaceAll(this.target, this.url)) : body;
  }
}

async function readAll(request: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A valid PNG (signature, IHDR, one tiny IDAT, IEND) whose header claims 100000 x 100000 pixels. */
export const BOMB_PNG = ((): Buffer => {
  const chunk = (type: string, data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(100_000, 0);
  header.writeUInt32BE(100_000, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([
    signature,
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
})();

const NOT_AN_IMAGE = Buffer.from('<html><body>Access denied</body></html>');

/** Base64 images (PNG, JPEG, WebP) inside JSON or SSE text, or an image body, replaced by `replacement`. */
function swapImages(body: Buffer, type: string, replacement: Buffer): Buffer {
  if (type.startsWith('image/') || type === 'application/octet-stream') return replacement;
  const text = body.toString('utf8');
  return Buffer.from(text.replace(/(iVBORw0KGgo|\/9j\/|UklGR)[A-Za-z0-9+/=]{40,}/g, replacement.toString('base64')));
}
