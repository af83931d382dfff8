/**
 * Child process of guard-process.test.ts: installs guardProcess with a pino logger on stdout, then lets the errors no
 * code listens for happen (an undici body destroyed unread, a thrown timer callback, a rejected promise nobody awaits),
 * then says it is still alive.
 */
import http from 'node:http';
import pino from 'pino';
import { request } from 'undici';
import { guardProcess } from '../../src/server.ts';

guardProcess(pino({ level: 'info' }));
const server = http.createServer((_request, response) => void response.writeHead(404).end('not found'));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address() as { port: number };
const response = await request(`http://127.0.0.1:${port}/x`, { signal: new AbortController().signal });
response.body.destroy(); // the original defect: UND_ERR_ABORTED with no listener
setTimeout(() => {
  throw new Error('a stray error in a timer');
}, 10);
void Promise.reject(new Error('a rejection nobody awaited'));
await new Promise((resolve) => setTimeout(resolve, 200));
server.close();
process.stdout.write('{"msg":"still alive"}\n');
