import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { failsWith } from '../helpers/assertions.ts';
import type { TestServer } from '../helpers/test-server.ts';
import { assertCleanAfter, startFaultServer, startUpstreams, type Upstreams } from './harness.ts';

/**
 * Image bombs and broken images from an upstream (DEEPSHI_UPSTREAM_MAX_PIXELS / DEEPSHI_UPSTREAM_MAX_SIDE): the
 * header's dimensions are checked before anything decodes the image. A PNG claiming 100000x100000 was delivered
 * and charged as "size":"100000x100000", or became a bare 500 when a transcode was asked for.
 */
describe('images an upstream returns', () => {
  let upstreams: Upstreams;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    upstreams = await startUpstreams();
    // 1024x1024 (the default size) is within the pixel limit; 1536 on a side is not.
    t = await startFaultServer(upstreams, { env: { DEEPSHI_UPSTREAM_MAX_PIXELS: '1100000', DEEPSHI_UPSTREAM_MAX_SIDE: '4096' } });
    account = await t.createAccount('100');
  });
  after(async () => {
    await t?.close();
    await upstreams?.close();
  });

  const generate = (extra: Record<string, unknown> = {}) =>
    t.client(account.key).images.generate({ model: 'deepshi-banana-pro', prompt: 'a bomb', ...extra } as never);
  const proxy = () => upstreams.proxies['openai-compatible'];

  for (const [name, extra, link] of [
    ['as base64', {}, false],
    ['as base64, with a transcode asked for', { output_format: 'jpeg' }, false],
    ['behind a result link', {}, true],
  ] as const) {
    it(`a PNG claiming 100000x100000 ${name}: 502 upstream_error, nothing charged, a warning with the route`, async () => {
      if (link) upstreams.compat.deliver = 'url';
      proxy().set({ path: link ? /^\/files\// : /^\/v1\/images\//, action: { kind: 'bomb' } });
      try {
        await failsWith(() => generate(extra), {
          status: 502,
          code: 'upstream_error',
          message: /100000x100000 pixels, over this server's limit/,
        });
      } finally {
        proxy().clear();
        upstreams.compat.reset();
      }
      const warning = t
        .logs()
        .reverse()
        .find((line) => line.msg === 'upstream image over the size limit; not delivered');
      assert.ok(warning, 'logged');
      assert.equal(warning.level, 40);
      assert.equal(warning.provider, 'openai-compatible');
      assert.equal(warning.model, 'deepshi-banana-pro');
      assert.deepEqual([warning.width, warning.height], [100000, 100000]);
      await assertCleanAfter(t, account.accountId, account.key, name);
      assert.equal((await generate(extra)).data?.length, 1, 'the next request is served');
    });
  }

  it('the limit is the configured one: 1536x1024 (1.57 MP) is refused at 1.1 MP, 1024x1024 delivered', async () => {
    await failsWith(() => generate({ size: '1536x1024' }), { status: 502, code: 'upstream_error', message: /1536x1024 pixels/ });
    const result = await generate({ size: '1024x1024' });
    assert.equal(result.data?.length, 1);
    await assertCleanAfter(t, account.accountId, account.key, 'configured limit');
  });

  it('an image cut short but declared complete is not delivered: 502, nothing charged', async () => {
    upstreams.compat.deliver = 'url';
    proxy().set({ path: /^\/files\//, action: { kind: 'truncate' } });
    try {
      await failsWith(() => generate(), { status: 502, code: 'upstream_error', message: /truncated image/ });
    } finally {
      proxy().clear();
      upstreams.compat.reset();
    }
    await assertCleanAfter(t, account.accountId, account.key, 'truncated');
  });
});
