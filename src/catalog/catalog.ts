import fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseUsd, type Nanos } from '../domain/money.ts';
import { catalogSchema, type CatalogFileModel, type ImageCatalogFileModel, type PricingRule, type TextCatalogFileModel } from './schema.ts';

/** A catalog model with its prices compiled to nanos once, at load. `kind` says which endpoints serve it. */
export type CatalogModel = ImageCatalogModel | TextCatalogModel;

/** Served by the image endpoints. */
export interface ImageCatalogModel extends ImageCatalogFileModel {
  compiledPricing: CompiledPricing;
}

/** Served by POST /v1/chat/completions; always priced per token. */
export interface TextCatalogModel extends TextCatalogFileModel {
  compiledPricing: Extract<CompiledPricing, { unit: 'token' }>;
}

export interface CompiledTokenRates {
  inputPerMillion: Nanos;
  cachedInputPerMillion: Nanos;
  imageInputPerMillion: Nanos;
  outputPerMillion: Nanos;
  imageOutputPerMillion: Nanos;
}

export interface CompiledSettlement {
  settle: 'list' | 'upstream_tokens' | 'upstream_cost';
  tokens: CompiledTokenRates | undefined;
  markupPercent: number;
}

export type CompiledPricing =
  | ({
      unit: 'image';
      base: Nanos;
      by: string[];
      table: Map<string, Nanos>;
      inputImage: Nanos;
      /** Per 1M UTF-8 bytes of the prompt, charged once per request. */
      promptPerMillionBytes: Nanos;
      /** Custom "WxH" sizes: per started output megapixel, keyed by the `by` values before the size. */
      customSizeMegapixel: Map<string, Nanos>;
    } & CompiledSettlement)
  | ({ unit: 'megapixel'; first: Nanos; additional: Nanos; input: Nanos } & CompiledSettlement)
  | {
      unit: 'token';
      inputPerMillion: Nanos;
      cachedInputPerMillion: Nanos;
      outputPerMillion: Nanos;
      imageOutputPerMillion: Nanos;
      imageEstimateTokens: number;
      maxOutputTokens: number;
    };

export class CatalogError extends Error {
  override name = 'CatalogError';
}

export class Catalog {
  readonly models: ReadonlyMap<string, CatalogModel>;
  constructor(models: CatalogModel[]) {
    this.models = new Map(models.map((model) => [model.id, model]));
  }
  get(id: string): CatalogModel | undefined {
    return this.models.get(id);
  }
  list(): CatalogModel[] {
    return [...this.models.values()];
  }
}

export function loadCatalogFile(filePath: string): Catalog {
  let text: string;
  try {
    text = fs.readFileSync(filePath, 'utf8');
  } catch (error) {
    throw new CatalogError(
      `Cannot read the model catalog at ${filePath} (${(error as NodeJS.ErrnoException).code ?? error}). Set DEEPSHI_CATALOG to a readable file.`,
    );
  }
  let data: unknown;
  try {
    data = filePath.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new CatalogError(
      `The model catalog at ${filePath} is not valid ${filePath.endsWith('.json') ? 'JSON' : 'YAML'}: ${(error as Error).message}`,
    );
  }
  return buildCatalog(data, filePath);
}

export function buildCatalog(data: unknown, source = 'catalog'): Catalog {
  const parsed = catalogSchema.safeParse(data);
  if (!parsed.success) {
    const lines = parsed.error.issues.slice(0, 10).map((issue) => `  - ${describePath(data, issue.path)}: ${issue.message}`);
    throw new CatalogError(`The model catalog ${source} is invalid:\n${lines.join('\n')}`);
  }
  const seen = new Set<string>();
  const models = parsed.data.models.map((model) => {
    if (seen.has(model.id)) throw new CatalogError(`The model catalog ${source} lists "${model.id}" twice.`);
    seen.add(model.id);
    checkModel(model, source);
    const compiledPricing = compilePricing(model.pricing, model.id, source);
    if (model.kind === 'image') return { ...model, compiledPricing };
    if (compiledPricing.unit !== 'token') {
      throw new CatalogError(
        `The model catalog ${source} is invalid: model "${model.id}": pricing: a text model is priced per token (unit: token).`,
      );
    }
    return { ...model, compiledPricing };
  });
  return new Catalog(models);
}

function describePath(data: unknown, path: PropertyKey[]): string {
  // models[3] → models[3] (id "flux-2-pro") so an operator finds the entry at once.
  const root = data as { models?: Array<{ id?: unknown }> };
  const index = path[0] === 'models' && typeof path[1] === 'number' ? path[1] : undefined;
  const id = index !== undefined ? root?.models?.[index]?.id : undefined;
  const text = path
    .map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`))
    .join('')
    .replace(/^\./, '');
  return id !== undefined ? `${text} (model "${String(id)}")` : text || '(root)';
}

function checkModel(model: CatalogFileModel, source: string): void {
  const fail = (message: string): never => {
    throw new CatalogError(`The model catalog ${source} is invalid: model "${model.id}": ${message}`);
  };
  if (model.kind === 'text') {
    if (!model.modalities.output.every((modality) => modality === 'text')) fail('kind text needs modalities.output [text].');
    if (model.max_output_tokens >= model.context_window) fail('max_output_tokens must be smaller than context_window.');
    return;
  }
  if (!model.modalities.output.includes('image')) fail('kind image needs image in modalities.output.');
  for (const [name, spec] of Object.entries(model.params)) {
    if (spec.type === 'string' && spec.default !== undefined && !spec.enum.includes(spec.default)) {
      fail(`params.${name}.default "${spec.default}" is not one of its enum values.`);
    }
    if (spec.type === 'integer') {
      if (spec.min > spec.max) fail(`params.${name}.min is greater than max.`);
      if (spec.default !== undefined && (spec.default < spec.min || spec.default > spec.max))
        fail(`params.${name}.default is outside min..max.`);
    }
  }
  const { sizing } = model;
  const needs = (param: string) => {
    if (!model.params[param]) fail(`sizing style ${sizing.style} needs a "${param}" parameter.`);
  };
  const needsTable = () => {
    if (!sizing.table) fail(`sizing style ${sizing.style} needs sizing.table.`);
  };
  if (sizing.style === 'pixel_dimensions') {
    needs('width');
    needs('height');
  }
  if (sizing.style === 'resolution_tier' || sizing.also_resolution_tier) {
    needs('resolution');
    needs('aspect_ratio');
    needsTable();
  }
  if (sizing.style === 'aspect_ratio') {
    needs('aspect_ratio');
    needsTable();
    if (!sizing.table!['*']) fail('sizing.table needs a "*" row for the aspect_ratio style.');
  }
  if (sizing.style === 'preset_size') {
    needs('image_size');
    needsTable();
    if (!sizing.table!['*']) fail('sizing.table needs a "*" row for the preset_size style.');
  }
  checkCustomSizePricing(model, fail);
  if (!model.edit.supported && model.edit.max_images !== 0) fail('edit.max_images must be 0 when edit.supported is false.');
  if (model.edit.supported && model.edit.max_images < 1) fail('edit.max_images must be at least 1 when edit.supported is true.');
  if (!model.output_formats.includes(model.native_output_format)) {
    // The native format is always deliverable, so list it: callers read output_formats to choose.
    fail('output_formats must include native_output_format.');
  }
}

/**
 * `custom_size_megapixel` prices exactly the sizes the table cannot key (free "WxH" values), so every listed size
 * must be in the table, and the size must be the last `by` value (the custom price is keyed by the ones before it).
 */
function checkCustomSizePricing(model: ImageCatalogFileModel, fail: (message: string) => never): void {
  const pricing = model.pricing;
  if (pricing.unit !== 'image' || !pricing.custom_size_megapixel) return;
  const by = pricing.by ?? [];
  const sizeParam = model.params.image_size;
  if (!model.sizing.custom_size || !sizeParam || sizeParam.type !== 'string' || by.at(-1) !== 'image_size') {
    fail('pricing.custom_size_megapixel needs sizing.custom_size and `image_size` as the last of pricing.by.');
  }
  let keys = [''];
  for (const param of by) {
    const spec = model.params[param];
    const values = spec?.type === 'string' ? spec.enum : fail(`pricing.by "${param}" must be a string parameter with an enum.`);
    keys = keys.flatMap((prefix) => values.map((value) => (prefix ? `${prefix}/${value}` : value)));
  }
  const missing = keys.filter((key) => pricing.table?.[key] === undefined);
  if (missing.length) fail(`pricing.table needs every listed size when custom_size_megapixel is set; missing ${missing.join(', ')}.`);
}

function compileTokenRates(rates: NonNullable<Extract<PricingRule, { unit: 'image' }>['tokens']>): CompiledTokenRates {
  return {
    inputPerMillion: parseUsd(rates.input_per_million),
    cachedInputPerMillion: parseUsd(rates.cached_input_per_million ?? rates.input_per_million),
    imageInputPerMillion: parseUsd(rates.image_input_per_million ?? rates.input_per_million),
    outputPerMillion: parseUsd(rates.output_per_million),
    imageOutputPerMillion: parseUsd(rates.image_output_per_million ?? rates.output_per_million),
  };
}

function compilePricing(rule: PricingRule, modelId: string, source: string): CompiledPricing {
  try {
    switch (rule.unit) {
      case 'image':
        if (rule.settle === 'upstream_tokens' && !rule.tokens) throw new Error('settle: upstream_tokens needs `tokens` rates');
        return {
          unit: 'image',
          base: parseUsd(rule.base),
          by: rule.by ?? [],
          table: new Map(Object.entries(rule.table ?? {}).map(([key, price]) => [key, parseUsd(price)])),
          inputImage: rule.input_image ? parseUsd(rule.input_image) : 0n,
          promptPerMillionBytes: rule.prompt_per_million_bytes ? parseUsd(rule.prompt_per_million_bytes) : 0n,
          customSizeMegapixel: new Map(Object.entries(rule.custom_size_megapixel ?? {}).map(([key, price]) => [key, parseUsd(price)])),
          settle: rule.settle,
          tokens: rule.tokens ? compileTokenRates(rule.tokens) : undefined,
          markupPercent: rule.markup_percent,
        };
      case 'megapixel':
        if (rule.settle === 'upstream_tokens') throw new Error('settle: upstream_tokens is not available for megapixel pricing');
        return {
          unit: 'megapixel',
          first: parseUsd(rule.first),
          additional: parseUsd(rule.additional),
          input: rule.input ? parseUsd(rule.input) : 0n,
          settle: rule.settle,
          tokens: undefined,
          markupPercent: rule.markup_percent,
        };
      case 'token':
        return {
          unit: 'token',
          inputPerMillion: parseUsd(rule.input_per_million),
          cachedInputPerMillion: parseUsd(rule.cached_input_per_million ?? rule.input_per_million),
          outputPerMillion: parseUsd(rule.output_per_million),
          imageOutputPerMillion: parseUsd(rule.image_output_per_million ?? rule.output_per_million),
          imageEstimateTokens: rule.image_estimate_tokens ?? 0,
          maxOutputTokens: rule.max_output_tokens ?? 4096,
        };
    }
  } catch (error) {
    throw new CatalogError(`The model catalog ${source} is invalid: model "${modelId}": pricing: ${(error as Error).message}`);
  }
}
