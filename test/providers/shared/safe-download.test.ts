import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { describe, it } from 'node:test';
import { isForbiddenAddress, safeDownload } from '../../../src/providers/shared/safe-download.ts';
import { ProviderError } from '../../../src/providers/types.ts';

/**
 * The SSRF guard for result links. Literal-IP links and off-list hosts are covered per provider (test/providers/*);
 * this file covers the address rules and what defeats DNS rebinding: the check runs on the addresses a name resolves
 * to, at connect time, so an allowed name that resolves to an internal address is refused before any connection.
 */
describe('isForbiddenAddress', () => {
  it('refuses loopback, private, link-local (metadata), CGNAT, multicast and reserved ranges, v4, v6 and v4-mapped', () => {
    for (const address of [
      '127.0.0.1',
      '127.255.0.9',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '224.0.0.1',
      '255.255.255.255',
      '192.0.0.8',
      '198.18.0.1',
      '::',
      '::1',
      'fd00::1',
      'fc00::1',
      'fe80::1',
      'ff02::1',
      '64:ff9b::7f00:1',
      '2001:db8::1',
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '::FFFF:a9fe:a9fe',
      '0:0:0:0:0:ffff:10.0.0.1',
      '0:0:0:0:0:ffff:c0a8:101',
    ]) {
      assert.equal(isForbiddenAddress(address), true, address);
    }
  });

  it('allows public addresses', () => {
    for (const address of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '::ffff:808:808']) {
      assert.equal(isForbiddenAddress(address), false, address);
    }
  });
});

describe('safeDownload', () => {
  it('refuses an allowed host name that resolves to a loopback address, before connecting (DNS rebinding)', async () => {
    let connections = 0;
    const server = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      // `localhost` is on the allowlist here, as a provider's CDN name would be; it resolves to 127.0.0.1 / ::1.
      await assert.rejects(
        safeDownload(`https://localhost:${port}/result.png`, { allowedHosts: ['localhost'], provider: 'Test' }, AbortSignal.timeout(5_000)),
        (error: unknown) => error instanceof ProviderError && /forbidden address/.test(error.message) && error.accepted,
      );
      assert.equal(connections, 0, 'no connection reached the internal address');
    } finally {
      server.close();
    }
  });

  it('refuses literal IPs, plain HTTP and hosts off the list without any lookup', async () => {
    const policy = { allowedHosts: ['*.example-cdn.test'], provider: 'Test' };
    for (const [url, reason] of [
      ['https://127.0.0.1/x.png', /does not deliver from/],
      ['https://[::ffff:7f00:1]/x.png', /does not deliver from/],
      ['http://img.example-cdn.test/x.png', /non-HTTPS/],
      ['https://evil.test/x.png', /does not deliver from/],
      ['https://user:pw@img.example-cdn.test/x.png', /credentials/],
    ] as const) {
      await assert.rejects(
        safeDownload(url, policy, AbortSignal.timeout(5_000)),
        (error: unknown) => error instanceof ProviderError && reason.test(error.message),
        url,
      );
    }
  });
});

describe('safeDownload: result links that do not answer with the image', () => {
  /**
   * An unread undici body that is destroyed emits UND_ERR_ABORTED; with no listener that error was uncaught and ended
   * the process (a 404, 403 or redirect on a result link took the whole gateway down). Every way a download can end
   * early must reject with a ProviderError and leave no stray error behind.
   */
  it('rejects 404, 403, a redirect to a 404, a redirect loop, an oversized and a cut-off body without an uncaught error', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    const server = http.createServer((request, response) => {
      const route = request.url ?? '';
      if (route === '/gone') return void response.writeHead(404, { 'content-type': 'text/plain' }).end('not found '.repeat(1000));
      if (route === '/expired') return void response.writeHead(403).end('<Error>Request has expired</Error>');
      if (route === '/moved') return void response.writeHead(302, { location: '/gone' }).end('moved');
      if (route === '/loop') return void response.writeHead(301, { location: '/loop' }).end('again');
      if (route === '/huge') return void response.writeHead(200, { 'content-type': 'image/png' }).end(Buffer.alloc(64 * 1024));
      // Headers, part of the body, then the connection is reset.
      response.writeHead(200, { 'content-type': 'image/png', 'content-length': '100000' });
      response.write(Buffer.alloc(1000));
      setTimeout(() => response.socket?.destroy(), 20);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const policy = { allowedHosts: [], trustedOrigins: [origin], provider: 'Test', maxBytes: 16 * 1024 };
    try {
      for (const [route, reason] of [
        ['/gone', /HTTP 404/],
        ['/expired', /HTTP 403/],
        ['/moved', /HTTP 404/],
        ['/loop', /redirected too many times/],
        ['/huge', /larger than 16384 bytes/],
        ['/cut', /broke off/],
      ] as const) {
        await assert.rejects(
          safeDownload(`${origin}${route}`, policy, AbortSignal.timeout(5_000)),
          (error: unknown) => error instanceof ProviderError && reason.test(error.message) && error.accepted,
          route,
        );
      }
      // Destroyed bodies report their error on a later tick: give them the chance to.
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(
        uncaught.map((error) => (error as { code?: string }).code ?? String(error)),
        [],
      );
    } finally {
      process.off('uncaughtException', onUncaught);
      server.close();
    }
  });
});
