import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI, { toFile } from 'openai';
import type { TestServer } from '../helpers/test-server.ts';
import type { FaultAction, FaultRule } from './fault-proxy.ts';
import { EDIT_INPUT, assertCleanAfter, startFaultServer, startUpstreams, type Provider, type Upstreams } from './harness.ts';

/**
 * The fault-injection matrix: every adapter (openai, gemini, bfl, fal, ark, xai, openai-compatible, chat) against its
 * simulator behind a FaultProxy, each of its upstream steps (submit, poll, download) answered with each fault, called
 * as JSON, as SSE and as an edit through the openai SDK (every response checked against the spec). Each case asserts:
 * the caller gets a proper envelope or `error` event (never a 500, never a hang-up), nothing stays held and every
 * request is resolved exactly once in the ledger, nothing secret is logged, and the same process then serves a healthy
 * request of the same model.
 */

type Mode = 'json' | 'sse' | 'edit';
type Step = 'submit' | 'poll' | 'download';

interface AdapterUnderTest {
  provider: Provider;
  model: string;
  text?: boolean;
  steps: Partial<Record<Step, { method?: string; path: RegExp }>>;
  /** Makes the next call deliver a result link (for download faults). */
  viaLink?: (upstreams: Upstreams) => void;
  /** The step whose answer carries the image (default submit). */
  imageStep?: Step;
}

const ADAPTERS: AdapterUnderTest[] = [
  { provider: 'openai', model: 'gpt-image-1.5', steps: { submit: { path: /^\/v1\/images\// } } },
  { provider: 'gemini', model: 'nano-banana-2', steps: { submit: { path: /generateContent/ } } },
  {
    provider: 'bfl',
    model: 'flux-2-pro',
    steps: { submit: { method: 'POST', path: /^\/v1\/flux/ }, poll: { path: /^\/v1\/get_result/ }, download: { path: /^\/results\// } },
    imageStep: 'download',
  },
  {
    provider: 'fal',
    model: 'seedream-fal',
    steps: { submit: { method: 'POST', path: /^\/fal-ai\// }, poll: { method: 'GET', path: /\/status/ }, download: { path: /^\/files\// } },
    imageStep: 'download',
  },
  { provider: 'ark', model: 'seedream-ark', steps: { submit: { path: /^\/api\/v3\/images/ } } },
  {
    provider: 'xai',
    model: 'grok-imagine',
    steps: { submit: { method: 'POST', path: /^\/v1\/images/ }, download: { method: 'GET', path: /^\/xai-tmp-imgen\// } },
    viaLink: (upstreams) => upstreams.xai.queue({ kind: 'images', as: 'url' }),
  },
  {
    provider: 'openai-compatible',
    model: 'deepshi-banana-pro',
    steps: { submit: { method: 'POST', path: /^\/v1\/images/ }, download: { method: 'GET', path: /^\/files\// } },
    viaLink: (upstreams) => (upstreams.compat.deliver = 'url'),
  },
  { provider: 'chat', model: 'chat-sim', text: true, steps: { submit: { path: /^\/v1\/chat\/completions/ } } },
];

interface FaultCase {
  name: string;
  action: FaultAction;
  /** The answer may be a success (a harmless fault, or one a retry got past): it must then be charged once. */
  mayPass?: boolean;
}

const ANY_STEP: FaultCase[] = [
  { name: 'HTTP 500', action: { kind: 'status', status: 500 } },
  { name: 'HTTP 404', action: { kind: 'status', status: 404 } },
  { name: 'a redirect to a missing page', action: { kind: 'redirect', location: '/does-not-exist' } },
  { name: 'a reset before the answer', action: { kind: 'reset' } },
  { name: 'a reset mid-body', action: { kind: 'reset-mid-body' } },
  { name: 'a hang', action: { kind: 'hang' } },
  { name: 'an HTML content type', action: { kind: 'content-type', type: 'text/html' }, mayPass: true },
  { name: 'a truncated body', action: { kind: 'truncate' } },
  { name: 'an oversized body', action: { kind: 'oversize', bytes: 8 * 1024 * 1024 } },
];
/** A result link is a signed URL on a CDN: what such links do when they go wrong. */
const DOWNLOAD_ONLY: FaultCase[] = [
  {
    name: 'HTTP 403 (an expired signed URL)',
    action: {
      kind: 'status',
      status: 403,
      body: '<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>',
      contentType: 'application/xml',
    },
  },
  { name: 'a trickled body', action: { kind: 'trickle', chunkBytes: 2048, intervalMs: 40 }, mayPass: true },
];
const SUBMIT_ONLY: FaultCase[] = [
  { name: 'HTTP 503 with Retry-After', action: { kind: 'status', status: 503, headers: { 'retry-after': '1' } } },
  { name: 'headers then a hang', action: { kind: 'hang-after-headers' } },
  {
    name: 'HTTP 400',
    action: { kind: 'status', status: 400, body: '{"error":{"message":"bad value for size","type":"invalid_request_error"}}' },
  },
  { name: 'HTTP 429', action: { kind: 'status', status: 429, headers: { 'retry-after': '1' } } },
  { name: 'HTTP 401', action: { kind: 'status', status: 401 } },
];
const IMAGE_FAULTS: FaultCase[] = [
  { name: 'a bomb image (PNG header claiming 100000x100000)', action: { kind: 'bomb' } },
  { name: 'bytes that are not an image', action: { kind: 'not-an-image' } },
];
/** Fewer cases as SSE and as edits: the path after the upstream is shared with JSON, the framing is what differs. */
const SSE_AND_EDIT: string[] = ['HTTP 500', 'a bomb image (PNG header claiming 100000x100000)'];
/** A poll is an idempotent read: what it may meet is fewer things, and an adapter may get past one (fal falls back to polling when its status stream fails). */
const POLL_FAULTS = [
  'HTTP 500',
  'HTTP 404',
  'a reset before the answer',
  'a reset mid-body',
  'a hang',
  'an HTML content type',
  'a truncated body',
  'an oversized body',
];

describe('upstream faults against every adapter', () => {
  let upstreams: Upstreams;
  let t: TestServer;
  let account: { accountId: string; key: string };
  let client: OpenAI;

  before(async () => {
    upstreams = await startUpstreams();
    t = await startFaultServer(upstreams);
    account = await t.createAccount('1000');
    client = t.client(account.key, { maxRetries: 0, timeout: 30_000 });
  });
  after(async () => {
    await t?.close();
    await upstreams?.close();
  });

  /** Calls the model as a caller would; resolves to 'ok' or the error the SDK raised. */
  async function call(adapter: AdapterUnderTest, mode: Mode): Promise<'ok' | unknown> {
    try {
      if (adapter.text) {
        if (mode === 'sse') {
          const stream = await client.chat.completions.create({
            model: adapter.model,
            messages: [{ role: 'user', content: 'hello' }],
            stream: true,
            max_tokens: 50,
          });
          for await (const _chunk of stream) {
            // read to the end
          }
        } else {
          await client.chat.completions.create({ model: adapter.model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 50 });
        }
        return 'ok';
      }
      if (mode === 'edit') {
        const result = await client.images.edit({
          model: adapter.model,
          prompt: 'make it blue',
          image: await toFile(EDIT_INPUT, 'in.png', { type: 'image/png' }),
        } as never);
        assert.ok((result as { data?: unknown[] }).data?.length);
      } else if (mode === 'sse') {
        const stream = await client.images.generate({ model: adapter.model, prompt: 'a lighthouse', stream: true } as never);
        let completed = 0;
        for await (const event of stream as unknown as AsyncIterable<{ type: string }>) if (event.type.endsWith('.completed')) completed++;
        assert.ok(completed > 0, 'a stream that ends without an error event delivered an image');
      } else {
        const result = await client.images.generate({ model: adapter.model, prompt: 'a lighthouse' } as never);
        assert.ok(result.data?.length);
      }
      return 'ok';
    } catch (error) {
      return error;
    }
  }

  function assertEnvelope(outcome: unknown, what: string, mayPass: boolean): void {
    if (outcome === 'ok') {
      assert.ok(mayPass, `${what}: expected an error, the call succeeded`);
      return;
    }
    assert.ok(outcome instanceof OpenAI.APIError, `${what}: not an API error: ${outcome}`);
    const error = outcome as InstanceType<typeof OpenAI.APIError> & { error?: { code?: string; type?: string } };
    if (error.status === undefined) {
      // An SSE `error` event: typed and coded like an envelope.
      assert.ok(error.error?.type ?? error.type, `${what}: the error event has a type`);
      assert.notEqual(error.error?.code ?? error.code, null, `${what}: the error event has a code`);
      return;
    }
    assert.ok([400, 429, 502, 503, 504].includes(error.status), `${what}: status ${error.status} (${error.message})`);
    assert.ok(error.code, `${what}: the envelope has a code (${error.message})`);
  }

  async function runCase(adapter: AdapterUnderTest, step: Step, fault: FaultCase, mode: Mode): Promise<void> {
    const what = `${adapter.provider} ${mode} ${step}: ${fault.name}`;
    const proxy = upstreams.proxies[adapter.provider];
    const where = adapter.steps[step]!;
    const before = await t.server.store.getAccount(account.accountId);
    if (step === 'download') adapter.viaLink?.(upstreams);
    proxy.set({ method: where.method, path: where.path, action: fault.action } satisfies FaultRule);
    const outcome = await call(adapter, mode);
    proxy.clear();
    upstreams.compat.reset();
    upstreams.xai.reset();
    assertEnvelope(outcome, what, fault.mayPass === true);
    const afterCall = await t.server.store.getAccount(account.accountId);
    if (outcome !== 'ok') assert.equal(afterCall?.balance, before?.balance, `${what}: a failed call charges nothing`);
    await assertCleanAfter(t, account.accountId, account.key, what);
    // The same process serves the next request of the same model.
    assert.equal(await call(adapter, 'json'), 'ok', `${what}: the next request was not served`);
  }

  for (const adapter of ADAPTERS) {
    describe(adapter.provider, () => {
      for (const step of Object.keys(adapter.steps) as Step[]) {
        const carriesImage = !adapter.text && step === (adapter.imageStep ?? 'submit');
        const linkOnly = step === 'download' && adapter.imageStep !== 'download';
        let faults = [
          ...ANY_STEP,
          ...(step === 'submit' ? SUBMIT_ONLY : []),
          ...(step === 'download' ? DOWNLOAD_ONLY : []),
          ...(carriesImage || linkOnly ? IMAGE_FAULTS : []),
        ];
        if (step === 'poll')
          faults = faults
            .filter((fault) => POLL_FAULTS.includes(fault.name))
            .map((fault) => ({ ...fault, mayPass: adapter.provider === 'fal' || fault.mayPass }));
        for (const fault of faults) {
          it(`${step}: ${fault.name}`, () => runCase(adapter, step, fault, 'json'));
        }
        // Streams and edits: at the step that carries the image (and on submit for the text model).
        if (!(carriesImage || (adapter.text && step === 'submit'))) continue;
        for (const fault of faults.filter((candidate) => SSE_AND_EDIT.includes(candidate.name))) {
          it(`${step}: ${fault.name}, streamed`, () => runCase(adapter, step, fault, 'sse'));
          if (!adapter.text) it(`${step}: ${fault.name}, as an edit`, () => runCase(adapter, step, fault, 'edit'));
        }
      }
    });
  }
});
