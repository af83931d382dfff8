import fs from 'node:fs';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml } from 'yaml';

/**
 * Validates response bodies against the API contract, spec/openapi.yaml (a verbatim copy of the published
 * contract, kept in the repo so a clean clone can test against it; test/spec/contract-copy.test.ts checks the copy
 * against ../shared/spec when that folder is present). The spec is OpenAPI 3.1 (JSON Schema 2020-12) but uses
 * the 3.0 `nullable` keyword in places; it is honoured here as "or null".
 */
const SPEC_PATH = path.resolve(import.meta.dirname, '../../spec/openapi.yaml');

type Schema = Record<string, unknown>;

function loadSchemas(): Record<string, Schema> {
  const spec = parseYaml(fs.readFileSync(SPEC_PATH, 'utf8')) as { components: { schemas: Record<string, Schema> } };
  return spec.components.schemas;
}

function rewrite(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(rewrite);
  if (node === null || typeof node !== 'object') return node;
  const out: Schema = {};
  for (const [key, value] of Object.entries(node as Schema)) {
    if (key === '$ref' && typeof value === 'string') out.$ref = value.replace('#/components/schemas/', 'deepshi#/$defs/');
    else if (key === 'nullable' || key === 'example') continue;
    else out[key] = rewrite(value);
  }
  const nullable = (node as Schema).nullable === true;
  if (nullable && typeof out.type === 'string') out.type = [out.type, 'null'];
  return out;
}

const schemas = loadSchemas();
const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema({ $id: 'deepshi', $defs: Object.fromEntries(Object.entries(schemas).map(([name, schema]) => [name, rewrite(schema)])) });

/** The Error schema, tightened to what the OpenAI SDKs need (message and type strings; code and param string|null). */
const strictError = {
  type: 'object',
  required: ['error'],
  additionalProperties: false,
  properties: {
    error: {
      type: 'object',
      required: ['message', 'type', 'code', 'param'],
      properties: {
        message: { type: 'string', minLength: 1 },
        type: { type: 'string', minLength: 1 },
        code: { type: ['string', 'null'] },
        param: { type: ['string', 'null'] },
      },
    },
  },
};

const validators = {
  ImageResponse: ajv.compile({ $ref: 'deepshi#/$defs/ImageResponse' }),
  ImageStreamEvent: ajv.compile({ $ref: 'deepshi#/$defs/ImageStreamEvent' }),
  Error: ajv.compile({ allOf: [{ $ref: 'deepshi#/$defs/Error' }, strictError] }),
};

export type SchemaName = keyof typeof validators;

/** Throws with every violation when `body` does not match the named component schema. */
export function assertMatchesSpec(name: SchemaName, body: unknown, context = ''): void {
  const validate = validators[name];
  if (!validate(body)) {
    throw new Error(`${context} response does not match ${name} in openapi.yaml: ${ajv.errorsText(validate.errors)}`);
  }
}

export const specCounters = { validated: 0 };
