/**
 * One Deepshi server (in process, SQLite, logs captured) in front of every provider simulator, each behind its own
 * FaultProxy, so one server instance runs many fault cases: the suite stays fast and every case is followed by a
 * healthy request on the same process. Test code only.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { renderSketch } from '../../src/images/sketch.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';
import { assertLedgerInvariant } from '../store/store-contract.ts';
import { ArkSimulator } from '../simulators/ark-simulator.ts';
import { BflSimulator } from '../simulators/bfl-simulator.ts';
import { FalSimulator } from '../simulators/fal-simulator.ts';
import { startGeminiSimulator } from '../simulators/gemini-simulator.ts';
import { startChatSimulator } from '../simulators/openai-chat-simulator.ts';
import { startCompatibleSimulator, type CompatibleSimulator } from '../simulators/openai-compatible-simulator.ts';
import { startOpenAiSimulator } from '../simulators/openai-simulator.ts';
import { startXaiSimulator, type XaiSimulator } from '../simulators/xai-simulator.ts';
import { FaultProxy } from './fault-proxy.ts';

const SHIPPED = path.resolve(import.meta.dirname, '../../catalog/models.yaml');
/** Upstream secrets: none of them may ever appear in a log line. */
export const SECRETS = {
  openai: 'sk-openai-secret-0123456789abcdef',
  gemini: 'AIza-gemini-secret-0123456789abcdef',
  xai: 'xai-secret-0123456789abcdef0123',
  compat: 'sk-compat-secret-0123456789abcdef',
  chat: 'sk-chat-secret-0123456789abcdef',
  fixed: 'sk-sim', // the BFL, fal and Ark simulators' fixed key
};
const TIMEOUTS = { connect_ms: 1_000, first_byte_ms: 1_500, total_ms: 3_000 };
const POLLING = { poll_interval_ms: 5, poll_timeout_ms: 1_500 };

export type Provider = 'openai' | 'gemini' | 'bfl' | 'fal' | 'ark' | 'xai' | 'openai-compatible' | 'chat';

export interface Upstreams {
  proxies: Record<Provider, FaultProxy>;
  compat: CompatibleSimulator;
  xai: XaiSimulator;
  close(): Promise<void>;
}

export async function startUpstreams(): Promise<Upstreams> {
  const openai = await startOpenAiSimulator({ apiKey: SECRETS.openai });
  const gemini = await startGeminiSimulator({ apiKey: SECRETS.gemini });
  const bfl = await new BflSimulator().start();
  const fal = await new FalSimulator().start();
  const ark = await new ArkSimulator().start();
  const xai = await startXaiSimulator({ apiKey: SECRETS.xai });
  const compat = await startCompatibleSimulator({ apiKey: SECRETS.compat });
  const chat = await startChatSimulator({ apiKey: SECRETS.chat });
  const targets: Record<Provider, string> = {
    openai: openai.url,
    gemini: gemini.url,
    bfl: bfl.url,
    fal: fal.url,
    ark: ark.url,
    xai: xai.url,
    'openai-compatible': compat.url,
    chat: chat.url,
  };
  const proxies = Object.fromEntries(
    await Promise.all(Object.entries(targets).map(async ([name, target]) => [name, await new FaultProxy(target).start()])),
  ) as Record<Provider, FaultProxy>;
  return {
    proxies,
    compat,
    xai,
    async close() {
      await Promise.all(Object.values(proxies).map((proxy) => proxy.close()));
      await Promise.all([openai.close(), gemini.close(), bfl.close(), fal.close(), ark.close(), xai.close(), compat.close(), chat.close()]);
    },
  };
}

/**
 * The shipped catalog with short timeouts and polls on every upstream route, plus `seedream-fal` and `seedream-ark`
 * (one route each, so a fault on one is not hidden by failover to the other) and the text model `chat-sim`.
 */
export function faultCatalog(extra: (catalog: any) => void = () => {}): string {
  const catalog = parseYaml(fs.readFileSync(SHIPPED, 'utf8'));
  for (const model of catalog.models) {
    for (const route of model.routes) {
      if (route.provider === 'offline') continue;
      route.options = {
        ...route.options,
        timeouts: TIMEOUTS,
        max_response_bytes: 4_000_000,
        ...(['bfl', 'fal'].includes(route.provider) ? POLLING : {}),
      };
    }
  }
  const seedream = catalog.models.find((model: { id: string }) => model.id === 'seedream-4.5');
  for (const provider of ['fal', 'ark']) {
    const variant = structuredClone(seedream);
    variant.id = `seedream-${provider}`;
    variant.routes = variant.routes.filter((route: { provider: string }) => route.provider === provider);
    catalog.models.push(variant);
  }
  catalog.models.push({
    id: 'chat-sim',
    owned_by: 'test',
    modalities: { input: ['text'], output: ['text'] },
    context_window: 4096,
    max_output_tokens: 1024,
    streaming: true,
    supported_sampling_parameters: ['max_tokens'],
    supported_features: [],
    pricing: { unit: 'token', input_per_million: '2.5', cached_input_per_million: '1.25', output_per_million: '10' },
    routes: [
      {
        provider: 'openai-compatible',
        upstream_model: 'sim-model',
        credentials_env: 'CHAT_SIM_KEY',
        base_url_env: 'CHAT_SIM_URL',
        options: { timeouts: TIMEOUTS },
      },
    ],
  });
  extra(catalog);
  return JSON.stringify(catalog);
}

export async function startFaultServer(
  upstreams: Upstreams,
  options: { env?: Record<string, string>; catalog?: string } = {},
): Promise<TestServer> {
  const { proxies } = upstreams;
  return startTestServer({
    captureLogs: true,
    catalog: options.catalog ?? faultCatalog(),
    env: {
      OPENAI_API_KEY: SECRETS.openai,
      OPENAI_BASE_URL: proxies.openai.url,
      GEMINI_API_KEY: SECRETS.gemini,
      GEMINI_BASE_URL: proxies.gemini.url,
      BFL_API_KEY: SECRETS.fixed,
      BFL_BASE_URL: proxies.bfl.url,
      FAL_KEY: SECRETS.fixed,
      FAL_BASE_URL: proxies.fal.url,
      ARK_API_KEY: SECRETS.fixed,
      ARK_BASE_URL: proxies.ark.url,
      XAI_API_KEY: SECRETS.xai,
      XAI_BASE_URL: proxies.xai.url,
      DEEPSHI_BANANA_PRO_API_KEY: SECRETS.compat,
      DEEPSHI_BANANA_PRO_BASE_URL: proxies['openai-compatible'].url,
      CHAT_SIM_KEY: SECRETS.chat,
      CHAT_SIM_URL: `${proxies.chat.url}/v1`,
      DEEPSHI_KEEPALIVE_MS: '100',
      DEEPSHI_GENERATION_TIMEOUT_MS: '4000',
      ...options.env,
    },
  });
}

/**
 * What every case must leave behind: nothing held, each request of the account resolved exactly once in the ledger
 * (one hold, then one settle or one release), the ledger invariant, no secret and no uncaught error in the log.
 */
export async function assertCleanAfter(t: TestServer, accountId: string, callerKey: string, what: string): Promise<void> {
  const { store } = t.server;
  const account = await store.getAccount(accountId);
  assert.equal(account?.held, 0n, `${what}: nothing stays held`);
  const requests = await store.listRequests(accountId, 10_000);
  const ledger = await store.listLedger(accountId, 100_000);
  for (const request of requests) {
    assert.notEqual(request.status, 'held', `${what}: request ${request.id} resolved`);
    const kinds = ledger
      .filter((entry) => entry.requestId === request.id)
      .map((entry) => entry.kind)
      .sort();
    assert.deepEqual(
      kinds,
      ['hold', request.status === 'settled' ? 'settle' : 'release'].sort(),
      `${what}: request ${request.id} has one hold and one resolution`,
    );
  }
  await assertLedgerInvariant(store, accountId);
  assertLogsClean(t, [callerKey, callerKey.slice(6), ...Object.values(SECRETS)], what);
}

export function assertLogsClean(t: TestServer, secrets: string[], what: string): void {
  for (const line of t.logs()) {
    const text = JSON.stringify(line);
    for (const secret of secrets)
      assert.equal(text.includes(secret), false, `${what}: a secret (${secret.slice(0, 6)}…) was logged: ${text.slice(0, 300)}`);
    assert.doesNotMatch(String(line.msg), /uncaught|unhandled/i, `${what}: ${text.slice(0, 300)}`);
  }
}

/** A small PNG to edit. */
export const EDIT_INPUT = await renderSketch({ prompt: 'an input', seed: 1, width: 256, height: 256, format: 'png' });
