import { createHash } from 'node:crypto';

/**
 * deepshi-echo's structured output: a JSON value that validates against a JSON Schema, built from the schema alone
 * (the stand-in understands no prompt). Strings are taken from the caller's own words, numbers and choices from a
 * generator seeded by the request, so the same request and seed always give the same value.
 *
 * Covered: type (one or several), const, enum, object (properties, required, additionalProperties,
 * min/maxProperties), array (items, prefixItems, min/maxItems, uniqueItems), string (min/maxLength, the common
 * formats, a pattern when one of a few candidates matches it), number and integer (minimum, maximum, their exclusive
 * forms, multipleOf), boolean, null, anyOf / oneOf (the first branch), allOf (merged), $ref into the same schema
 * ($defs, definitions, #). Not covered (a value may then fail): not, if/then/else, dependent schemas, and patterns no
 * candidate meets.
 */

type Schema = Record<string, unknown>;

/** A small deterministic generator (mulberry32) seeded from a hash of the request. */
export class SeededRandom {
  private state: number;

  constructor(...parts: unknown[]) {
    this.state = createHash('sha256').update(JSON.stringify(parts)).digest().readUInt32LE(0);
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }
}

const MAX_DEPTH = 12;
/** Below this depth only what the schema requires is built (required properties, minItems items). */
const SHALLOW = 3;
const FORMATS: Record<string, string> = {
  'date-time': '2026-01-01T00:00:00Z',
  date: '2026-01-01',
  time: '00:00:00Z',
  duration: 'P1D',
  email: 'echo@example.com',
  'idn-email': 'echo@example.com',
  hostname: 'example.com',
  'idn-hostname': 'example.com',
  ipv4: '192.0.2.1',
  ipv6: '2001:db8::1',
  uri: 'https://example.com/echo',
  'uri-reference': 'https://example.com/echo',
  iri: 'https://example.com/echo',
  url: 'https://example.com/echo',
};

export class JsonInstanceBuilder {
  constructor(
    private readonly root: unknown,
    private readonly random: SeededRandom,
    /** The caller's words, the material for strings. */
    private readonly words: string[],
  ) {}

  build(): unknown {
    return this.value(this.root, 0, 0);
  }

  private value(raw: unknown, depth: number, variant: number): unknown {
    if (raw === true || raw === undefined) return this.text(undefined, variant);
    if (raw === false || raw === null || typeof raw !== 'object' || Array.isArray(raw)) return null;
    let schema = this.resolve(raw as Schema);
    if (Array.isArray(schema.allOf)) schema = this.merge(schema);
    if ('const' in schema) return schema.const;
    if (Array.isArray(schema.enum) && schema.enum.length > 0)
      return schema.enum[(this.random.int(0, schema.enum.length - 1) + variant) % schema.enum.length];
    for (const key of ['anyOf', 'oneOf'] as const) {
      const branches = schema[key];
      if (Array.isArray(branches) && branches.length > 0) {
        // The first branch that is not only null, so the answer carries something.
        const branch = branches.find((item) => !(isSchema(item) && item.type === 'null')) ?? branches[0];
        const { [key]: _, ...rest } = schema;
        return this.value(isSchema(branch) ? { ...rest, ...this.resolve(branch) } : branch, depth, variant);
      }
    }
    const type = this.typeOf(schema);
    if (depth > MAX_DEPTH && (type === 'object' || type === 'array')) return type === 'object' ? {} : [];
    if (type === 'object') return this.object(schema, depth);
    if (type === 'array') return this.array(schema, depth);
    return this.scalar(type, schema, variant);
  }

  private scalar(type: string, schema: Schema, variant: number): unknown {
    switch (type) {
      case 'null':
        return null;
      case 'boolean':
        return (this.random.int(0, 1) + variant) % 2 === 0;
      case 'integer':
        return this.number(schema, true, variant);
      case 'number':
        return this.number(schema, false, variant);
      default:
        return this.string(schema, variant);
    }
  }

  private typeOf(schema: Schema): string {
    const type = schema.type;
    if (typeof type === 'string') return type;
    if (Array.isArray(type) && type.length > 0) return (type.find((item) => item !== 'null') ?? type[0]) as string;
    if (isSchema(schema.properties) || schema.additionalProperties !== undefined || Array.isArray(schema.required)) return 'object';
    if (schema.items !== undefined || Array.isArray(schema.prefixItems)) return 'array';
    if (typeof schema.minimum === 'number' || typeof schema.maximum === 'number' || typeof schema.multipleOf === 'number') return 'number';
    return 'string';
  }

  private object(schema: Schema, depth: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const properties = isSchema(schema.properties) ? schema.properties : {};
    const required = new Set(Array.isArray(schema.required) ? schema.required : []);
    // Optional properties near the top only, so recursive schemas end.
    for (const [name, property] of Object.entries(properties))
      if (depth < SHALLOW || required.has(name)) out[name] = this.value(property, depth + 1, 0);
    for (const name of Array.isArray(schema.required) ? schema.required : []) {
      if (typeof name === 'string' && !(name in out)) out[name] = this.value(this.extraSchema(schema), depth + 1, 0);
    }
    const max = typeof schema.maxProperties === 'number' ? schema.maxProperties : Infinity;
    for (const name of Object.keys(out)) if (Object.keys(out).length > max && !required.has(name)) delete out[name];
    const min = typeof schema.minProperties === 'number' ? schema.minProperties : 0;
    for (let index = 1; Object.keys(out).length < min && schema.additionalProperties !== false; index++) {
      const name = `field_${index}`;
      if (!(name in out)) out[name] = this.value(this.extraSchema(schema), depth + 1, index);
    }
    return out;
  }

  private extraSchema(schema: Schema): unknown {
    return isSchema(schema.additionalProperties) ? schema.additionalProperties : { type: 'string' };
  }

  private array(schema: Schema, depth: number): unknown[] {
    const prefix = Array.isArray(schema.prefixItems) ? schema.prefixItems : [];
    const min = Math.max(typeof schema.minItems === 'number' ? schema.minItems : 0, prefix.length);
    const max = typeof schema.maxItems === 'number' ? schema.maxItems : Math.max(min, 3);
    const count = Math.min(max, Math.max(min, depth < SHALLOW ? this.random.int(1, 2) : 0));
    const items: unknown[] = [];
    const seen = new Set<string>();
    for (let index = 0; items.length < count && index < count * 4 + 4; index++) {
      const itemSchema = items.length < prefix.length ? prefix[items.length] : schema.items;
      const item = this.value(itemSchema === false ? undefined : itemSchema, depth + 1, index);
      const key = JSON.stringify(item);
      if (schema.uniqueItems === true && seen.has(key)) continue;
      seen.add(key);
      items.push(item);
    }
    return items;
  }

  private number(schema: Schema, integer: boolean, variant: number): number {
    const num = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);
    const exclusiveMin = num(schema.exclusiveMinimum);
    const exclusiveMax = num(schema.exclusiveMaximum);
    let low = num(schema.minimum) ?? (exclusiveMin !== undefined ? exclusiveMin : undefined);
    let high = num(schema.maximum) ?? (exclusiveMax !== undefined ? exclusiveMax : undefined);
    if (low === undefined) low = high !== undefined ? Math.min(0, high - 100) : 0;
    if (high === undefined) high = low + 100;
    const step = num(schema.multipleOf);
    // multipleOf is checked as validators do (value / step a whole number, in floating point), so candidates are
    // tried against exactly that: whole numbers first, then multiples of a fractional step.
    const fits = (value: number) =>
      value >= low! &&
      value <= high! &&
      (exclusiveMin === undefined || value > exclusiveMin) &&
      (exclusiveMax === undefined || value < exclusiveMax) &&
      (step === undefined || Number.isInteger(value / step)) &&
      (!integer || Number.isInteger(value));
    const units = step === undefined ? [1] : Number.isInteger(step) ? [step] : [1, step];
    for (const unit of units) {
      const first = Math.ceil(low / unit);
      const last = Math.floor(high / unit);
      if (first > last) continue;
      const span = Math.min(last - first, 1000);
      const start = (this.random.int(0, span) + variant) % (span + 1);
      for (let offset = 0; offset <= span; offset++) {
        const value = (first + ((start + offset) % (span + 1))) * unit;
        if (fits(value)) return value;
      }
    }
    // No whole multiple fits (e.g. a number strictly between 0 and 1): points inside the range.
    if (!integer) {
      for (const fraction of [0.5, 0.25, 0.75]) {
        const value = low + (high - low) * fraction;
        if (fits(value)) return value;
      }
    }
    return integer ? Math.ceil(low) : low;
  }

  private string(schema: Schema, variant: number): string {
    if (typeof schema.format === 'string') {
      if (schema.format === 'uuid') return this.uuid();
      if (FORMATS[schema.format]) return FORMATS[schema.format];
    }
    let text = this.text(schema, variant);
    if (typeof schema.pattern === 'string') {
      const pattern = safeRegExp(schema.pattern);
      if (pattern) {
        const candidates = [text, ...this.words, 'echo', 'a', 'A', '0', 'x1', 'a-1', 'AB12', 'abc', ''];
        const match = candidates.find((candidate) => pattern.test(candidate) && lengthFits(candidate, schema));
        if (match !== undefined) return match;
      }
    }
    const min = typeof schema.minLength === 'number' ? schema.minLength : 0;
    const max = typeof schema.maxLength === 'number' ? schema.maxLength : Infinity;
    let characters = Array.from(text);
    while (characters.length < min) characters = characters.concat(Array.from(` ${text || 'echo'}`));
    if (characters.length > max) characters = characters.slice(0, max);
    text = characters.join('');
    return text;
  }

  /** Some of the caller's words (a variant shifts them, so array items differ). */
  private text(schema: Schema | undefined, variant: number): string {
    if (this.words.length === 0) return variant > 0 ? `echo ${variant + 1}` : 'echo';
    const start = (this.random.int(0, this.words.length - 1) + variant) % this.words.length;
    const length = Math.min(
      this.words.length,
      schema && typeof schema.maxLength === 'number' && schema.maxLength < 20 ? 1 : this.random.int(1, 4),
    );
    const picked: string[] = [];
    for (let index = 0; index < length; index++) picked.push(this.words[(start + index) % this.words.length]);
    const text = picked.join(' ');
    return variant > 0 && this.words.length <= variant ? `${text} ${variant + 1}` : text;
  }

  private uuid(): string {
    const hex = Array.from({ length: 32 }, () => this.random.int(0, 15).toString(16));
    hex[12] = '4';
    hex[16] = ['8', '9', 'a', 'b'][this.random.int(0, 3)];
    const text = hex.join('');
    return `${text.slice(0, 8)}-${text.slice(8, 12)}-${text.slice(12, 16)}-${text.slice(16, 20)}-${text.slice(20)}`;
  }

  /** Follows a local $ref (#, #/$defs/…, #/definitions/…); other keywords beside it are kept. */
  private resolve(schema: Schema, seen = 0): Schema {
    if (typeof schema.$ref !== 'string' || seen > 32) return schema;
    const target = pointer(this.root, schema.$ref);
    const { $ref: _, ...rest } = schema;
    return isSchema(target) ? this.resolve({ ...target, ...rest }, seen + 1) : rest;
  }

  /** allOf folded into one schema: properties and required joined, other keywords the last one's. */
  private merge(schema: Schema): Schema {
    const { allOf, ...rest } = schema;
    let merged: Schema = { ...rest };
    for (const part of allOf as unknown[]) {
      if (!isSchema(part)) continue;
      const resolved = this.resolve(part);
      const inner = Array.isArray(resolved.allOf) ? this.merge(resolved) : resolved;
      merged = {
        ...merged,
        ...inner,
        properties: { ...(isSchema(merged.properties) ? merged.properties : {}), ...(isSchema(inner.properties) ? inner.properties : {}) },
        required: [...(Array.isArray(merged.required) ? merged.required : []), ...(Array.isArray(inner.required) ? inner.required : [])],
      };
    }
    return merged;
  }
}

function isSchema(value: unknown): value is Schema {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function pointer(root: unknown, ref: string): unknown {
  if (!ref.startsWith('#')) return undefined;
  const path = ref
    .slice(1)
    .split('/')
    .filter(Boolean)
    .map((part) => decodeURIComponent(part).replace(/~1/g, '/').replace(/~0/g, '~'));
  let node: unknown = root;
  for (const part of path) {
    if (!isSchema(node) && !Array.isArray(node)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function safeRegExp(source: string): RegExp | undefined {
  try {
    return new RegExp(source, 'u');
  } catch {
    return undefined;
  }
}

function lengthFits(text: string, schema: Schema): boolean {
  const length = Array.from(text).length;
  return (
    (typeof schema.minLength !== 'number' || length >= schema.minLength) &&
    (typeof schema.maxLength !== 'number' || length <= schema.maxLength)
  );
}

/** The words of a text, as string material: letters and digits runs, at most 40. */
export function wordsOf(text: string): string[] {
  return (text.match(/[\p{L}\p{N}][\p{L}\p{N}'-]*/gu) ?? []).slice(0, 40);
}
