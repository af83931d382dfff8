import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { openApiDocument } from './openapi-responses.ts';

/**
 * Validates response bodies against the component schemas of the document GET /openapi.json serves (built by the same
 * function, src/http/openapi-document.ts, from the published contract spec/openapi.yaml and spec/deepshi-extensions.yaml;
 * test/http/openapi.test.ts checks the served copy is identical). So every body the suite checks is checked against the
 * served document, the contract's schemas with our documented extension fields.
 */
const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (ajv: Ajv2020) => void)(ajv);
ajv.addFormat('int64', true);
ajv.addFormat('binary', true);
ajv.addSchema({ ...openApiDocument, $id: 'served-openapi.json' });

const schema = (name: string) => ({ $ref: `served-openapi.json#/components/schemas/${name}` });

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
  ImageResponse: ajv.compile(schema('ImageResponse')),
  ImageStreamEvent: ajv.compile(schema('ImageStreamEvent')),
  ImageJob: ajv.compile(schema('ImageJob')),
  ImageJobEvent: ajv.compile(schema('ImageJobEvent')),
  Error: ajv.compile({ allOf: [schema('Error'), strictError] }),
};

export type SchemaName = keyof typeof validators;

/** Throws with every violation when `body` does not match the named component schema of the served /openapi.json. */
export function assertMatchesSpec(name: SchemaName, body: unknown, context = ''): void {
  const validate = validators[name];
  if (!validate(body)) {
    throw new Error(
      `${context} response does not match ${name} in /openapi.json: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`,
    );
  }
}
