import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { approximatePromptTokens, approximateTokens, echoAnswer, OfflineEchoAdapter } from '../../src/providers/offline/echo-adapter.ts';
import type { NormalizedChatRequest } from '../../src/providers/types.ts';

/** deepshi-echo: deterministic answers, the documented token approximation, max tokens and stop sequences. */
const request = (overrides: Partial<NormalizedChatRequest> = {}): NormalizedChatRequest => ({
  model: 'deepshi-echo',
  messages: [{ role: 'user', content: 'hello' }],
  maxOutputTokens: 100,
  stop: [],
  sampling: {},
  extra: {},
  ...overrides,
});

describe('OfflineEchoAdapter', () => {
  it('counts ceil(characters / 4) per text and 4 per message, by code point', () => {
    assert.equal(approximateTokens(''), 0);
    assert.equal(approximateTokens('abcd'), 1);
    assert.equal(approximateTokens('abcde'), 2);
    assert.equal(approximateTokens('🦊🦊🦊🦊'), 1);
    assert.equal(
      approximatePromptTokens([
        { role: 'system', content: 'abc' },
        { role: 'user', content: 'abcdefgh' },
      ]),
      4 + 1 + 4 + 2,
    );
  });

  it('echoes the last user message, whatever follows it', () => {
    const messages = [
      { role: 'user' as const, content: 'first' },
      { role: 'user' as const, content: 'second' },
      { role: 'assistant' as const, content: 'reply' },
    ];
    assert.deepEqual(echoAnswer(request({ messages })), { content: 'Echo: second', finishReason: 'stop' });
    assert.deepEqual(
      echoAnswer(request({ messages: [{ role: 'system', content: 'only a system prompt' }] })).content,
      'Echo: only a system prompt',
    );
  });

  it('cuts at max output tokens (length) and before the earliest stop sequence (stop), whichever comes first', () => {
    assert.deepEqual(echoAnswer(request({ maxOutputTokens: 2 })), { content: 'Echo: he', finishReason: 'length' });
    assert.deepEqual(echoAnswer(request({ stop: ['l', 'e'] })), { content: 'Echo: h', finishReason: 'stop' });
    assert.deepEqual(echoAnswer(request({ stop: ['llo'], maxOutputTokens: 1 })), { content: 'Echo', finishReason: 'length' });
  });

  it('streams one token per delta and reports usage by the same approximation; deterministic', async () => {
    const adapter = new OfflineEchoAdapter();
    const deltas: string[] = [];
    const result = await adapter.complete(request(), {} as never, {
      signal: new AbortController().signal,
      onDelta: (_choice, text) => deltas.push(text),
    });
    assert.deepEqual(deltas, ['Echo', ': he', 'llo']);
    assert.deepEqual(result.usage, { inputTokens: 6, cachedInputTokens: 0, outputTokens: 3 });
    assert.deepEqual(await adapter.complete(request(), {} as never, { signal: new AbortController().signal }), result);
  });

  it('stops when the caller goes away', async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(new OfflineEchoAdapter().complete(request(), {} as never, { signal: controller.signal }));
  });
});
