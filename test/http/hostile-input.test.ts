import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rawRequest, startTestServer, type TestServer } from '../helpers/test-server.ts';

/** Bad input never causes a 500, a crash or a lost cent: it is a 4xx envelope and the balance is unchanged. */
describe('hostile input', () => {
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    t = await startTestServer();
    account = await t.createAccount('1');
  });
  after(() => t.close());

  const bodies: Array<[string, string]> = [
    ['prototype pollution', '{"model":"deepshi-sketch","prompt":"x","__proto__":{"n":4},"constructor":{"prototype":{"admin":true}}}'],
    ['deep nesting', `{"model":"deepshi-sketch","prompt":${'['.repeat(5000)}${']'.repeat(5000)}}`],
    ['model as array', '{"model":["deepshi-sketch"],"prompt":"x"}'],
    ['model as object', '{"model":{"id":"deepshi-sketch"},"prompt":"x"}'],
    ['null everything', '{"model":null,"prompt":null,"n":null}'],
    ['huge n', '{"model":"deepshi-sketch","prompt":"x","n":1e308}'],
    ['negative width', '{"model":"deepshi-sketch","prompt":"x","width":-1024,"height":1024}'],
    ['float seed', '{"model":"deepshi-sketch","prompt":"x","seed":1.5}'],
    ['string n', '{"model":"deepshi-sketch","prompt":"x","n":"4"}'],
    ['boolean stream as string', '{"model":"deepshi-sketch","prompt":"x","stream":"yes"}'],
    ['lone surrogates and NULs', '{"model":"deepshi-sketch\\u0000","prompt":"\\ud800\\u0000"}'],
    ['empty object', '{}'],
    ['a string', '"hello"'],
    ['a number', '42'],
    ['null', 'null'],
    ['unknown model with path tricks', '{"model":"../../etc/passwd","prompt":"x"}'],
    ['size with CRLF', '{"model":"deepshi-sketch","prompt":"x","size":"1024x1024\\r\\nx-injected: 1"}'],
    ['response_format with CRLF', '{"model":"deepshi-sketch","prompt":"x","output_format":"png\\r\\nset-cookie: a"}'],
  ];

  for (const [name, body] of bodies) {
    it(`${name} → a 4xx envelope, never a 500`, async () => {
      const response = await rawRequest(t.url, {
        path: '/v1/images/generations',
        method: 'POST',
        headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
        body,
      });
      assert.ok(
        response.status >= 400 && response.status < 500,
        `${name}: got ${response.status} ${JSON.stringify(response.body).slice(0, 200)}`,
      );
      assert.equal(response.headers.get('x-injected'), null);
      assert.equal(response.headers.get('set-cookie'), null);
    });
  }

  it('odd headers: a non-Bearer scheme, an over-long key, unicode in the key', async () => {
    for (const authorization of ['Basic abc', `Bearer ${'a'.repeat(10_000)}`, 'Bearer sk-bf-ü', 'Bearer']) {
      const response = await rawRequest(t.url, { path: '/v1/models', method: 'GET', headers: { authorization } });
      assert.equal(response.status, 401, authorization.slice(0, 20));
    }
  });

  const chatBodies: Array<[string, string]> = [
    ['chat: messages as a string', '{"model":"deepshi-echo","messages":"hello"}'],
    ['chat: message without role', '{"model":"deepshi-echo","messages":[{"content":"x"}]}'],
    ['chat: content as a number', '{"model":"deepshi-echo","messages":[{"role":"user","content":42}]}'],
    [
      'chat: parts of unknown types',
      '{"model":"deepshi-echo","messages":[{"role":"user","content":[{"type":"audio"},{"text":"x"},null,7]}]}',
    ],
    ['chat: 10k messages', `{"model":"deepshi-echo","messages":[${Array(10_000).fill('{"role":"user","content":"x"}').join(',')}]}`],
    ['chat: stop as object', '{"model":"deepshi-echo","messages":[{"role":"user","content":"x"}],"stop":{"a":1}}'],
    ['chat: huge max_tokens', '{"model":"deepshi-echo","messages":[{"role":"user","content":"x"}],"max_tokens":1e308}'],
    [
      'chat: stream_options as array',
      '{"model":"deepshi-echo","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":[true]}',
    ],
    ['chat: tools as string', '{"model":"deepshi-echo","messages":[{"role":"user","content":"x"}],"tools":"all"}'],
    [
      'chat: prototype pollution',
      '{"model":"deepshi-echo","messages":[{"role":"user","content":"x","__proto__":{"role":"system"}}],"__proto__":{"stream":true}}',
    ],
    ['chat: image model', '{"model":"deepshi-sketch","messages":[{"role":"user","content":"x"}]}'],
  ];

  for (const [name, body] of chatBodies) {
    it(`${name} → a 4xx envelope, never a 500`, async () => {
      const response = await rawRequest(t.url, {
        path: '/v1/chat/completions',
        method: 'POST',
        headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
        body,
      });
      assert.ok(
        response.status >= 400 && response.status < 500,
        `${name}: got ${response.status} ${JSON.stringify(response.body).slice(0, 200)}`,
      );
      assert.equal(typeof response.body.error.message, 'string');
    });
  }

  /**
   * Seeded fuzz: each field of both endpoints set to values of every JSON type, alone and in random combinations.
   * Whatever the server makes of them, the answer is a 2xx or a 4xx envelope, never a 5xx. Requests that succeed are
   * paid from a separate account, so the main account's balance stays a check that rejections cost nothing.
   */
  it('fuzz: random values in every field of generations and chat → never a 5xx', async () => {
    const payer = await t.createAccount('100');
    let seed = 0x5eed;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) >>> 0;
      return seed / 2 ** 32;
    };
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    const values: unknown[] = [
      null,
      true,
      false,
      0,
      -1,
      1,
      2,
      4,
      5,
      1.5,
      -0.5,
      1e9,
      Number.MAX_SAFE_INTEGER,
      '',
      'x',
      '1024x1024',
      'auto',
      '16:9',
      '2K',
      'png',
      'url',
      '\u0000',
      'é'.repeat(5000),
      [],
      [1],
      ['x'],
      {},
      { type: 'text', text: 'x' },
      { include_usage: true },
      [{ role: 'user', content: 'x' }],
      [{ role: 'user', content: [{ type: 'text', text: 'x' }] }],
      [{ role: 'tool', content: 'x' }],
      [{ role: 'assistant', content: null }],
    ];
    const imageFields = [
      'model',
      'prompt',
      'n',
      'size',
      'width',
      'height',
      'aspect_ratio',
      'resolution',
      'quality',
      'image_size',
      'seed',
      'response_format',
      'output_format',
      'stream',
      'partial_images',
      'background',
      'extra',
    ];
    const chatFields = [
      'model',
      'messages',
      'max_tokens',
      'max_completion_tokens',
      'stop',
      'stream',
      'stream_options',
      'n',
      'temperature',
      'top_p',
      'seed',
      'tools',
      'tool_choice',
      'response_format',
      'logprobs',
      'top_logprobs',
      'user',
      'logit_bias',
    ];
    for (let round = 0; round < 150; round++) {
      for (const [path, model, required, fields] of [
        ['/v1/images/generations', 'deepshi-sketch', { prompt: 'fuzz' }, imageFields],
        ['/v1/chat/completions', 'deepshi-echo', { messages: [{ role: 'user', content: 'fuzz' }] }, chatFields],
      ] as const) {
        const body: Record<string, unknown> = { model, ...required };
        const changes = 1 + Math.floor(random() * 3);
        for (let change = 0; change < changes; change++) body[pick(fields)] = pick(values);
        const response = await rawRequest(t.url, {
          path,
          method: 'POST',
          headers: { authorization: `Bearer ${payer.key}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        assert.ok(
          response.status < 500,
          `${path} ${JSON.stringify(body).slice(0, 300)} → ${response.status} ${JSON.stringify(response.body).slice(0, 300)}`,
        );
        if (response.status >= 400) assert.equal(typeof response.body?.error?.message, 'string', `${path}: an envelope`);
      }
    }
    const account = await t.admin('GET', `/admin/v1/accounts/${payer.accountId}`);
    assert.equal(account.held, '0', 'no hold left behind');
  });

  it('leaves the balance untouched and the server healthy', async () => {
    assert.equal(await t.balance(account.accountId), '1');
    assert.equal((await fetch(`${t.url}/healthz`)).status, 200);
  });
});
