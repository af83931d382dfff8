import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { buildCatalog, CatalogError, loadCatalogFile } from '../../src/catalog/catalog.ts';
import { modelCard } from '../../src/catalog/model-card.ts';

/** GET /v1/models cards built from the catalog: text models carry their token limits and rates, no image fields. */
const catalog = loadCatalogFile(path.resolve(import.meta.dirname, '../../catalog/models.yaml'));

describe('modelCard', () => {
  it('describes deepshi-echo as an offline text model: limits, honoured parameters, features, per-token price', () => {
    const card = modelCard(catalog.get('deepshi-echo')!);
    assert.equal(card.object, 'model');
    assert.equal(card.kind, 'text');
    assert.equal(card.owned_by, 'deepshi');
    assert.match(String(card.description), /development stand-in/);
    assert.match(String(card.description), /not a language model/);
    assert.deepEqual(card.modalities, { input: ['text'], output: ['text'] });
    assert.equal(card.context_window, 16384);
    assert.equal(card.max_output_tokens, 4096);
    assert.deepEqual(card.supported_sampling_parameters, ['max_tokens', 'max_completion_tokens', 'stop', 'seed']);
    assert.deepEqual(card.supported_features, ['tools', 'json', 'structured']);
    assert.deepEqual(card.supported_parameters, [
      'messages',
      'max_tokens',
      'max_completion_tokens',
      'n',
      'stream',
      'stream_options',
      'stop',
      'seed',
      'tools',
      'tool_choice',
      'parallel_tool_calls',
      'functions',
      'function_call',
      'response_format',
    ]);
    assert.deepEqual((card.parameters as any).response_format.enum, ['text', 'json_object', 'json_schema']);
    assert.deepEqual((card.parameters as any).max_tokens.max, 4096);
    assert.equal(card.max_choices, 8);
    assert.equal((card.parameters as any).n.max, 8);
    const pricing = card.pricing as Record<string, unknown>;
    assert.deepEqual(
      {
        unit: pricing.unit,
        input: pricing.input_per_million,
        cached: pricing.cached_input_per_million,
        output: pricing.output_per_million,
      },
      { unit: 'token', input: '0.1', cached: '0.025', output: '0.4' },
    );
    assert.equal(pricing.image_output_per_million, undefined);
    for (const imageField of ['sizing', 'edit', 'output_formats', 'prompt_max_length', 'max_n'])
      assert.equal(card[imageField], undefined, imageField);
  });

  it('publishes how many choices (n) each text model serves: catalog max_choices, 1 by default', () => {
    for (const [id, max] of [
      ['gpt-4o', 128],
      ['gpt-4o-mini', 128],
      ['deepshi-2.0', 8],
      ['deepshi-3.0', 8],
    ] as const) {
      const card = modelCard(catalog.get(id)!);
      assert.equal(card.max_choices, max, id);
      assert.deepEqual((card.parameters as any).n, {
        type: 'integer',
        min: 1,
        max,
        default: 1,
        description: 'Choices to generate; each has the whole completion budget and is billed for its tokens (the prompt once).',
      });
    }
  });

  it('lists the feature fields a model honours: deepshi-3.0 reasoning and logprobs, deepshi-2.0 neither nor tools', () => {
    const three = modelCard(catalog.get('deepshi-3.0')!);
    for (const name of [
      'tools',
      'tool_choice',
      'response_format',
      'logprobs',
      'top_logprobs',
      'reasoning_effort',
      'reasoning',
      'logit_bias',
    ]) {
      assert.ok((three.supported_parameters as string[]).includes(name), name);
    }
    const two = modelCard(catalog.get('deepshi-2.0')!);
    for (const name of ['tools', 'logprobs', 'reasoning_effort']) assert.ok(!(two.supported_parameters as string[]).includes(name), name);
    assert.deepEqual((two.parameters as any).response_format.enum, ['text', 'json_object', 'json_schema']);
  });

  it('keeps image cards as they were, marked kind image', () => {
    const card = modelCard(catalog.get('deepshi-sketch')!);
    assert.equal(card.kind, 'image');
    assert.ok(card.sizing && card.edit && card.output_formats);
    assert.equal((card.pricing as any).per_image, '0.001');
  });
});

describe('text models in the catalog', () => {
  const echo = () => ({
    id: 't',
    owned_by: 'x',
    modalities: { input: ['text'], output: ['text'] },
    context_window: 100,
    max_output_tokens: 10,
    streaming: true,
    pricing: { unit: 'token', input_per_million: '1', output_per_million: '2' },
    routes: [{ provider: 'offline' }],
  });

  it('takes its kind from modalities.output, and needs no image fields', () => {
    const model = buildCatalog({ version: 1, models: [echo()] }).get('t')!;
    assert.equal(model.kind, 'text');
    assert.equal(model.compiledPricing.unit, 'token');
  });

  it('serves one choice unless max_choices says more (1-128); the card says so', () => {
    const card = modelCard(buildCatalog({ version: 1, models: [echo()] }).get('t')!);
    assert.equal(card.max_choices, 1);
    assert.equal((card.parameters as any).n.max, 1);
    assert.match((card.parameters as any).n.description, /ignored with a warning/);
    assert.equal(modelCard(buildCatalog({ version: 1, models: [{ ...echo(), max_choices: 4 }] }).get('t')!).max_choices, 4);
    for (const bad of [0, 129, 2.5])
      assert.throws(() => buildCatalog({ version: 1, models: [{ ...echo(), max_choices: bad }] }), CatalogError);
  });

  it('refuses per-image prices, image fields and a max output that fills the context window, naming the model', () => {
    assert.throws(
      () => buildCatalog({ version: 1, models: [{ ...echo(), pricing: { unit: 'image', base: '0.01' } }] }),
      (error: Error) => error instanceof CatalogError && /"t".*per token/.test(error.message),
    );
    assert.throws(() => buildCatalog({ version: 1, models: [{ ...echo(), max_n: 1 }] }), CatalogError);
    assert.throws(
      () => buildCatalog({ version: 1, models: [{ ...echo(), max_output_tokens: 100 }] }),
      /max_output_tokens must be smaller than context_window/,
    );
  });
});
