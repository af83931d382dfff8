import { formatUsd } from '../domain/money.ts';
import type { CatalogModel, ImageCatalogModel, TextCatalogModel } from './catalog.ts';

/**
 * A model as GET /v1/models shows it: the OpenAI Model object, extended with everything a caller needs to
 * build a valid request and compute its price before calling.
 */
export function modelCard(model: CatalogModel): Record<string, unknown> {
  return model.kind === 'text' ? textModelCard(model) : imageModelCard(model);
}

/** The OpenAI Model object and what every card shares. */
function cardHeader(model: CatalogModel): Record<string, unknown> {
  return {
    id: model.id,
    object: 'model',
    created: model.created,
    owned_by: model.owned_by,
    ...(model.name ? { name: model.name } : {}),
    ...(model.description ? { description: model.description } : {}),
    kind: model.kind,
    modalities: model.modalities,
    architecture: { input_modalities: model.modalities.input, output_modalities: model.modalities.output },
  };
}

/**
 * A text model: its limits (context window, output tokens), the request fields it honours (the others are ignored
 * with a warning), its features and its per-token price.
 */
function textModelCard(model: TextCatalogModel): Record<string, unknown> {
  const maxTokens = {
    type: 'integer',
    min: 1,
    max: model.max_output_tokens,
    description: 'Most completion tokens; default: the most the model and the context window allow.',
  };
  const parameters: Record<string, unknown> = {
    messages: {
      type: 'array',
      required: true,
      roles: ['system', 'developer', 'user', 'assistant', 'tool'],
      content: ['string', 'text parts'],
    },
    max_tokens: maxTokens,
    max_completion_tokens: { ...maxTokens, description: 'Alias of max_tokens.' },
    n: {
      type: 'integer',
      min: 1,
      max: model.max_choices,
      default: 1,
      description:
        model.max_choices > 1
          ? 'Choices to generate; each has the whole completion budget and is billed for its tokens (the prompt once).'
          : 'One choice per request; a larger n is ignored with a warning.',
    },
    stream: { type: 'boolean', default: false },
    stream_options: { type: 'object', fields: { include_usage: { type: 'boolean', default: false } } },
  };
  const sampling: Record<string, Record<string, unknown>> = {
    stop: { type: 'string | string[]', max_items: 4 },
    temperature: { type: 'number', min: 0, max: 2 },
    top_p: { type: 'number', min: 0, max: 1 },
    seed: { type: 'integer' },
    frequency_penalty: { type: 'number', min: -2, max: 2 },
    presence_penalty: { type: 'number', min: -2, max: 2 },
    logit_bias: { type: 'object' },
  };
  for (const name of model.supported_sampling_parameters) if (sampling[name]) parameters[name] = sampling[name];
  // The feature fields the model honours (the docs' capabilities); the others are ignored with a warning.
  const features = model.supported_features;
  if (features.includes('tools')) {
    parameters.tools = { type: 'array', items: 'function tools' };
    parameters.tool_choice = { type: 'string | object', enum: ['none', 'auto', 'required'], default: 'auto' };
    parameters.parallel_tool_calls = { type: 'boolean', default: true };
    parameters.functions = { type: 'array', deprecated: true, description: 'Legacy; mapped to tools.' };
    parameters.function_call = { type: 'string | object', deprecated: true, description: 'Legacy; mapped to tool_choice.' };
  }
  const formats = [
    'text',
    ...(features.includes('json') ? ['json_object'] : []),
    ...(features.includes('structured') ? ['json_schema'] : []),
  ];
  if (formats.length > 1) parameters.response_format = { type: 'object', enum: formats, default: 'text' };
  if (features.includes('logprobs')) {
    parameters.logprobs = { type: 'boolean', default: false };
    parameters.top_logprobs = { type: 'integer', min: 0, max: 20 };
  }
  if (features.includes('reasoning')) {
    parameters.reasoning_effort = { type: 'string', enum: ['none', 'minimal', 'low', 'medium', 'high', 'xhigh'] };
    parameters.reasoning = {
      type: 'object',
      fields: { effort: { type: 'string' }, max_tokens: { type: 'integer' }, exclude: { type: 'boolean' }, enabled: { type: 'boolean' } },
    };
  }
  return {
    ...cardHeader(model),
    context_window: model.context_window,
    max_output_tokens: model.max_output_tokens,
    max_choices: model.max_choices,
    streaming: model.streaming,
    parameters,
    supported_parameters: Object.keys(parameters),
    supported_sampling_parameters: model.supported_sampling_parameters,
    supported_features: model.supported_features,
    pricing: pricingCard(model),
  };
}

function imageModelCard(model: ImageCatalogModel): Record<string, unknown> {
  const parameters: Record<string, unknown> = {
    prompt: { type: 'string', required: true, max_length: model.prompt_max_length },
    n: { type: 'integer', min: 1, max: model.max_n, default: 1 },
    response_format: { type: 'string', enum: ['b64_json', 'url'], default: 'b64_json' },
    output_format: { type: 'string', enum: model.output_formats, default: model.native_output_format },
    stream: { type: 'boolean', default: false },
  };
  if (model.streaming && model.max_partial_images > 0) {
    parameters.partial_images = { type: 'integer', min: 0, max: model.max_partial_images, default: 0 };
  }
  if (model.seed) parameters.seed = { type: 'integer', min: 0, max: 2 ** 32 - 1 };
  for (const [name, spec] of Object.entries(model.params)) {
    const { description, ...rest } = spec;
    parameters[name] = description ? { ...rest, description } : rest;
  }
  return {
    ...cardHeader(model),
    prompt_max_length: model.prompt_max_length,
    max_n: model.max_n,
    output_formats: model.output_formats,
    streaming: model.streaming,
    sizing: {
      style: model.sizing.style,
      fields: sizingFields(model),
      ...(model.sizing.table ? { sizes: model.sizing.table } : {}),
      ...(model.sizing.custom_size ? { custom_size: model.sizing.custom_size } : {}),
    },
    parameters,
    supported_parameters: Object.keys(parameters),
    edit: model.edit,
    pricing: pricingCard(model),
  };
}

function sizingFields(model: ImageCatalogModel): string[] {
  switch (model.sizing.style) {
    case 'pixel_dimensions':
      return model.sizing.also_resolution_tier ? ['width', 'height', 'aspect_ratio', 'resolution'] : ['width', 'height'];
    case 'resolution_tier':
      return ['aspect_ratio', 'resolution'];
    case 'aspect_ratio':
      return ['aspect_ratio'];
    case 'preset_size':
      return ['image_size'];
  }
}

/**
 * How the charge is settled once images are delivered. The list price above is always the most that can be
 * held for the request; `upstream_tokens` / `upstream_cost` models are charged what the upstream reports
 * (tokens × these rates, or its cost plus the markup), never more than the hold.
 */
function settlementCard(pricing: Extract<CatalogModel['compiledPricing'], { unit: 'image' | 'megapixel' }>): Record<string, unknown> {
  if (pricing.settle === 'list') return { settle: 'list' };
  if (pricing.settle === 'upstream_cost') return { settle: 'upstream_cost', markup_percent: pricing.markupPercent };
  const rates = pricing.tokens!;
  return {
    settle: 'upstream_tokens',
    tokens: {
      input_per_million: formatUsd(rates.inputPerMillion),
      cached_input_per_million: formatUsd(rates.cachedInputPerMillion),
      image_input_per_million: formatUsd(rates.imageInputPerMillion),
      output_per_million: formatUsd(rates.outputPerMillion),
      image_output_per_million: formatUsd(rates.imageOutputPerMillion),
    },
  };
}

function pricingCard(model: CatalogModel): Record<string, unknown> {
  const pricing = model.compiledPricing;
  switch (pricing.unit) {
    case 'image':
      return {
        currency: 'USD',
        unit: 'image',
        per_image: formatUsd(pricing.base),
        ...(pricing.by.length
          ? { by: pricing.by, table: Object.fromEntries([...pricing.table].map(([key, value]) => [key, formatUsd(value)])) }
          : {}),
        ...(pricing.customSizeMegapixel.size > 0
          ? {
              custom_size_per_megapixel: Object.fromEntries(
                [...pricing.customSizeMegapixel].map(([key, value]) => [key, formatUsd(value)]),
              ),
            }
          : {}),
        ...(pricing.inputImage > 0n ? { per_input_image: formatUsd(pricing.inputImage) } : {}),
        ...(pricing.promptPerMillionBytes > 0n ? { prompt_per_million_bytes: formatUsd(pricing.promptPerMillionBytes) } : {}),
        rule: [
          pricing.by.length
            ? `per output image; the price is looked up by ${pricing.by.join(' / ')} (most specific key first), else per_image`
            : 'per output image',
          ...(pricing.customSizeMegapixel.size > 0
            ? [
                `a custom size not in the table: custom_size_per_megapixel (by ${pricing.by.slice(0, -1).join(' / ')}) × ceil(width*height/1048576)`,
              ]
            : []),
          ...(pricing.inputImage > 0n ? ['plus per_input_image for each reference image'] : []),
          ...(pricing.promptPerMillionBytes > 0n
            ? ["plus the prompt's UTF-8 bytes × prompt_per_million_bytes / 1,000,000, rounded up to the next nano-dollar, once per request"]
            : []),
        ].join('; '),
        ...settlementCard(pricing),
      };
    case 'megapixel':
      return {
        currency: 'USD',
        unit: 'megapixel',
        first_megapixel: formatUsd(pricing.first),
        additional_megapixel: formatUsd(pricing.additional),
        ...(pricing.input > 0n ? { input_megapixel: formatUsd(pricing.input) } : {}),
        rule: 'per output image: first_megapixel + (ceil(width*height/1048576) - 1) * additional_megapixel; plus ceil(MP) of each input image * input_megapixel',
        ...settlementCard(pricing),
      };
    case 'token':
      return {
        currency: 'USD',
        unit: 'token',
        input_per_million: formatUsd(pricing.inputPerMillion),
        cached_input_per_million: formatUsd(pricing.cachedInputPerMillion),
        output_per_million: formatUsd(pricing.outputPerMillion),
        ...(model.kind === 'image' ? { image_output_per_million: formatUsd(pricing.imageOutputPerMillion) } : {}),
        rule:
          model.kind === 'text'
            ? '(uncached prompt tokens × input + cached prompt tokens × cached_input + completion tokens × output) / 1,000,000, rounded up to the next nano-dollar per request; the hold is the prompt tokens plus the most completion tokens the request allows, at the same rates'
            : 'sum of tokens × rate / 1,000,000, rounded up to the next nano-dollar per request',
      };
  }
}
