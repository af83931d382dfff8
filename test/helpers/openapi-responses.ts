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

/** The path parameters of a template that take the rest of the path, slashes included (model ids such as vendor/model). */
const restOfPath = (template: string): string[] =>
  Object.values((openApiDocument.paths as Node)[template] as Node).flatMap((operation: Node) =>
    ((operation.parameters ?? []) as Node[]).filter((parameter) => parameter['x-deepshi-rest-of-path']).map((parameter) => parameter.name),
  );

const templates = Object.keys(openApiDocument.paths as Node)
  .map((template) => ({
    template,
    pattern: new RegExp(
      `^${template.replace(/[.]/g, '\\.').replace(/\{([^}]+)\}/g, (_, name: string) => (restOfPath(template).includes(name) ? '.+' : '[^/]+'))}$`,
    ),
    params: (template.match(/\{/g) ?? []).length,
  }))
  // Literal paths before templated ones (/v1/models before /v1/models/{model}).
  .sort((a, b) => a.params - b.params);

const compiled = new Map<string, ValidateFunction>();
/** How many responses and SSE events were checked against the document in this process. */
export const openApiCounters = { validated: 0, events: 0 };

const pointer = (...parts: string[]) => parts.map((part) => part.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

/** The documented operation for a method and path, or undefined when the path or the method is not in the document. */
export function documentedOperation(method: string, url: string): { template: string; operation: Node } | undefined {
  const pathname = new URL(url, 'http://x').pathname.replace(/\/$/, '') || '/';
  const match = templates.find((entry) => entry.pattern.test(pathname));
  const operation = match && ((openApiDocument.paths as Node)[match.template][method.toLowerCase()] as Node | undefined);
  return match && operation ? { template: match.template, operation } : undefined;
}

/**
 * The validator of the documented body for (method, path, status, content type), or null when the response is
 * documented without a body. Throws when any of the four is not documented.
 */
function documentedBody(
  method: string,
  url: string,
  status: number,
  contentType: string | null,
): { where: string; validate: ValidateFunction | null } {
  const pathname = new URL(url, 'http://x').pathname.replace(/\/$/, '') || '/';
  const where = `${method} ${pathname} → ${status}`;
  if (!templates.some((entry) => entry.pattern.test(pathname))) throw new Error(`${where}: path not in /openapi.json`);
  const found = documentedOperation(method, url);
  if (!found) throw new Error(`${where}: method not in /openapi.json`);
  const { template, operation } = found;
  let response = operation.responses[String(status)] ?? operation.responses.default;
  if (!response)
    throw new Error(`${where}: status not documented in /openapi.json (documented: ${Object.keys(operation.responses).join(', ')})`);
  let responsePath = pointer(
    'paths',
    template,
    method.toLowerCase(),
    'responses',
    operation.responses[String(status)] ? String(status) : 'default',
  );
  if (response.$ref) {
    const name = String(response.$ref).replace('#/components/responses/', '');
    response = (openApiDocument.components as Node).responses[name];
    responsePath = pointer('components', 'responses', name);
  }
  if (!response.content) return { where, validate: null };
  const type = (contentType ?? '').split(';')[0].trim();
  if (!(type in response.content))
    throw new Error(`${where}: content type "${type}" not documented (${Object.keys(response.content).join(', ')})`);
  const ref = `openapi.json#/${responsePath}/${pointer('content', type, 'schema')}`;
  let validate = compiled.get(ref);
  if (!validate) {
    validate = ajv.compile({ $ref: ref });
    compiled.set(ref, validate);
  }
  return { where, validate };
}

/**
 * Throws unless (method, path, status, content type, body) is a response the served document describes. A body given
 * as bytes (an image, a file) is opaque to JSON Schema: its content type is checked, not its bytes.
 */
export function assertDocumentedResponse(method: string, url: string, status: number, contentType: string | null, body: unknown): void {
  const { where, validate } = documentedBody(method, url, status, contentType);
  if (!validate) {
    if (body !== undefined && body !== '' && !(body instanceof Uint8Array && body.length === 0))
      throw new Error(`${where}: documented without a body, got one`);
  } else if (!(body instanceof Uint8Array) && !validate(body)) {
    throw new Error(
      `${where}: body does not match /openapi.json: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`,
    );
  }
  openApiCounters.validated++;
}

/** Throws unless `event` (one SSE event's data, parsed) matches the event schema documented for this stream. */
export function assertDocumentedEvent(method: string, url: string, status: number, event: unknown): void {
  const { where, validate } = documentedBody(method, url, status, 'text/event-stream');
  if (!validate?.(event))
    throw new Error(
      `${where}: SSE event does not match /openapi.json: ${ajv.errorsText(validate?.errors)}\n${JSON.stringify(event).slice(0, 500)}`,
    );
  openApiCounters.events++;
}

/** fetch, with the JSON body parsed (text kept as text); like every fetch to a server under test, checked against /openapi.json. */
export async function documentedFetch(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; body: any; text: string }> {
  const response = await fetch(url, init);
  const text = await response.text();
  const contentType = response.headers.get('content-type');
  let body: unknown = text;
  if (contentType?.startsWith('application/json')) body = JSON.parse(text);
  return { status: response.status, headers: response.headers, body, text };
}
