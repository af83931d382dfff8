/**
 * A minimal OpenAI-compatible upstream for benchmarks: answers POST /v1/images/generations at once (or after
 * BENCH_UPSTREAM_DELAY_MS) with one precomputed ~1.5 MB base64 PNG, so both targets pay the same upstream cost.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import sharp from 'sharp';

const delayMs = Number(process.env.BENCH_UPSTREAM_DELAY_MS ?? 0);
// Noise compresses badly, so a 700×700 RGB PNG is about as large as a real 1024² generation (~1.1 MB → 1.5 MB base64).
const width = 700;
const noise = randomBytes(width * width * 3);
const png = await sharp(noise, { raw: { width, height: width, channels: 3 } })
  .png({ compressionLevel: 1 })
  .toBuffer();
const body = Buffer.from(JSON.stringify({ created: 1, data: [{ b64_json: png.toString('base64') }] }));

const server = http.createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    const send = () => response.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body);
    if (delayMs > 0) setTimeout(send, delayMs);
    else send();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number };
  process.stdout.write(`listening on http://127.0.0.1:${address.port}\n`);
});
