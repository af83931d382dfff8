import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

/**
 * The OpenAPI 3.1 document GET /openapi.json serves: the published contract (spec/openapi.yaml, verbatim) merged with
 * what this server adds (spec/deepshi-extensions.yaml): its other endpoints, responses added to the contract's
 * operations (the 202 of a job), the dashboard and operator routes, and
 * extension fields. The contract's 3.0-style `nullable: true` becomes 3.1's `type: [x, 'null']`, so the whole document
 * is plain JSON Schema 2020-12 that any 3.1 tool (and the tests' validator) reads as it is.
 */
const SPEC_DIR = path.resolve(import.meta.dirname, '../../spec');

type Node = Record<string, unknown>;

export function buildOpenApiDocument(version: string): Node {
  const contract = parseYaml(fs.readFileSync(path.join(SPEC_DIR, 'openapi.yaml'), 'utf8')) as Node;
  const extensions = parseYaml(fs.readFileSync(path.join(SPEC_DIR, 'deepshi-extensions.yaml'), 'utf8')) as Node;
  const document = toJsonSchema2020(contract) as Node;
  const extra = extensions as { tags: unknown[]; paths: Node; components: Record<string, Node> };

  document.info = { ...(document.info as Node), version, 'x-contract-version': (document.info as Node).version };
  // Self-hosted: the API is wherever this document was fetched from.
  document.servers = [{ url: '/', description: 'This Deepshi server' }];
  document.tags = extra.tags;
  document.paths ??= {};
  const paths = document.paths as Node;
  for (const [route, item] of Object.entries(extra.paths)) {
    const added = route.startsWith('/dashboard/api/') ? withSessionSecurity(item as Node) : (item as Node);
    paths[route] = paths[route] ? withAddedResponses(paths[route] as Node, added) : added;
  }
  for (const [route, item] of Object.entries(paths)) paths[route] = withClosingResponse(withBodyParserResponses(item as Node));
  const components = document.components as Record<string, Node>;
  for (const [section, entries] of Object.entries(extra.components)) {
    components[section] ??= {};
    const target = components[section];
    for (const [name, value] of Object.entries(entries)) {
      const existing = target[name] as Node | undefined;
      // A schema named in both keeps the contract's definition and gains the extension's properties.
      target[name] =
        existing && section === 'schemas'
          ? { ...existing, properties: { ...(existing.properties as Node), ...((value as Node).properties as Node) } }
          : value;
    }
  }
  return document;
}

/** A contract operation named in the extensions keeps everything it has and gains the responses it lacks (e.g. 202 for jobs). */
function withAddedResponses(contract: Node, extension: Node): Node {
  const out: Node = { ...contract };
  for (const [method, operation] of Object.entries(extension)) {
    const existing = out[method] as Node | undefined;
    out[method] = existing
      ? { ...existing, responses: { ...((operation as Node).responses as Node), ...(existing.responses as Node) } }
      : operation;
  }
  return out;
}

/**
 * Every POST, PUT and PATCH body goes through the same parser (src/http/app.ts, src/http/error-handler.ts) before the
 * route sees it, whether or not the operation documents a body: malformed JSON is a 400, a body over the limit a 413,
 * a content type the server does not parse a 415. Operations that do not say so themselves gain those answers.
 */
const BODY_PARSER_RESPONSES: Node = {
  '400': { $ref: '#/components/responses/BadRequest' },
  '413': { $ref: '#/components/responses/PayloadTooLarge' },
  '415': { $ref: '#/components/responses/UnsupportedMediaType' },
};

function withBodyParserResponses(item: Node): Node {
  const out: Node = { ...item };
  for (const method of ['post', 'put', 'patch']) {
    const operation = out[method] as Node | undefined;
    if (operation) out[method] = { ...operation, responses: { ...BODY_PARSER_RESPONSES, ...(operation.responses as Node) } };
  }
  return out;
}

/**
 * Any request can arrive while the server is closing, on a connection opened before (src/http/closing.ts): it is
 * refused with 503 `server_shutting_down`. Operations that document no 503 of their own gain that answer; those
 * that do already document the same error envelope for it.
 */
const OPERATION_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

function withClosingResponse(item: Node): Node {
  const out: Node = { ...item };
  for (const method of OPERATION_METHODS) {
    const operation = out[method] as Node | undefined;
    const responses = operation?.responses as Node | undefined;
    if (operation && responses && !responses['503'])
      out[method] = { ...operation, responses: { ...responses, '503': { $ref: '#/components/responses/ShuttingDown' } } };
  }
  return out;
}

/** Dashboard operations default to the session cookie unless they say otherwise (security: [] = public). */
function withSessionSecurity(item: Node): Node {
  const out: Node = {};
  for (const [method, operation] of Object.entries(item)) {
    const op = operation as Node;
    out[method] = 'security' in op ? op : { ...op, security: [{ SessionCookie: [] }] };
  }
  return out;
}

function toJsonSchema2020(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toJsonSchema2020);
  if (node === null || typeof node !== 'object') return node;
  const out: Node = {};
  for (const [key, value] of Object.entries(node as Node)) {
    if (key === 'nullable') continue;
    out[key] = toJsonSchema2020(value);
  }
  if ((node as Node).nullable === true && typeof out.type === 'string') out.type = [out.type, 'null'];
  return out;
}
