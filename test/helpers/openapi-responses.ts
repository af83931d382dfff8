import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { buildOpenApiDocument } from '../../src/http/openapi-document.ts';

/**
 * Validates any response against the document GET /openapi.json serves (built by the same function; a test in
 * test/http/openapi.test.ts checks the served copy is identical): the operation is found by method and path template,
 * the response by status, the schema by content type. An undocumented path, status or content type fails as loudly as
 * a body that does not match.
 */
type Node = Record<string, any>;

export const openApiDocument = buildOpenApiDocument(
  (
    JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))) as {
      version: string;
    }
  ).version,
);

const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (ajv: Ajv2020) => void)(ajv);
ajv.addFormat('int64', true);
ajv.addFormat('binary', true);
ajv.addSchema({ ...openApiDocument, $id: 'openapi.json' });

const templates = Object.keys(openApiDocument.paths as Node)
  .map((template) => ({
    template,
    pattern: new RegExp(`^${template.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+')}$`),
    params: (template.match(/\{/g) ?? []).length,
  }))
  // Literal paths before templated ones (/v1/models before /v1/models/{model}).
  .sort((a, b) => a.params - b.params);

const compiled = new Map<string, ValidateFunction>();
export const openApiCounters = { validated: 0 };

const pointer = (...parts: string[]) => parts.map((part) => part.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

/** Throws unless (method, path, status, content type, body) is a response the served document describes. */
export function assertDocumentedResponse(method: string, url: string, status: number, contentType: string | null, body: unknown): void {
  const pathname = new URL(url, 'http://x').pathname.replace(/\/$/, '') || '/';
  const match = templates.find((entry) => entry.pattern.test(pathname));
  const where = `${method} ${pathname} → ${status}`;
  if (!match) throw new Error(`${where}: path not in /openapi.json`);
  const operation = (openApiDocument.paths as Node)[match.template][method.toLowerCase()] as Node | undefined;
  if (!operation) throw new Error(`${where}: method not in /openapi.json`);
  let response = operation.responses[String(status)] ?? operation.responses.default;
  if (!response)
    throw new Error(`${where}: status not documented in /openapi.json (documented: ${Object.keys(operation.responses).join(', ')})`);
  let responsePath = pointer(
    'paths',
    match.template,
    method.toLowerCase(),
    'responses',
    operation.responses[String(status)] ? String(status) : 'default',
  );
  if (response.$ref) {
    const name = String(response.$ref).replace('#/components/responses/', '');
    response = (openApiDocument.components as Node).responses[name];
    responsePath = pointer('components', 'responses', name);
  }
  if (!response.content) {
    if (body !== undefined && body !== '') throw new Error(`${where}: documented without a body, got one`);
    openApiCounters.validated++;
    return;
  }
  const type = (contentType ?? '').split(';')[0].trim();
  if (!(type in response.content))
    throw new Error(`${where}: content type "${type}" not documented (${Object.keys(response.content).join(', ')})`);
  const ref = `openapi.json#/${responsePath}/${pointer('content', type, 'schema')}`;
  let validate = compiled.get(ref);
  if (!validate) {
    validate = ajv.compile({ $ref: ref });
    compiled.set(ref, validate);
  }
  if (!validate(body))
    throw new Error(
      `${where}: body does not match /openapi.json: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`,
    );
  openApiCounters.validated++;
}

/** fetch, with every response validated against /openapi.json (JSON bodies parsed; text kept as text). */
export async function documentedFetch(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; body: any; text: string }> {
  const response = await fetch(url, init);
  const text = await response.text();
  const contentType = response.headers.get('content-type');
  let body: unknown = text;
  if (contentType?.startsWith('application/json')) body = JSON.parse(text);
  assertDocumentedResponse(init.method ?? 'GET', url, response.status, contentType, response.status === 204 ? undefined : body);
  return { status: response.status, headers: response.headers, body, text };
}

/** A fetch for the openai SDK: every JSON response it receives is validated against /openapi.json first. */
export async function documentingFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const response = await fetch(input, init);
  const url = String(input instanceof Request ? input.url : input);
  const type = response.headers.get('content-type');
  if (type?.startsWith('application/json')) {
    assertDocumentedResponse(init?.method ?? 'GET', url, response.status, type, await response.clone().json());
  }
  return response;
}
