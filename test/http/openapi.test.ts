/**
 * GET /openapi.json (src/http/openapi-document.ts): the served document is the one the tests validate against, it is
 * OpenAPI 3.1 with every reference resolving and every schema compiling as JSON Schema 2020-12, the published
 * contract's operation is in it unchanged, and every operation it documents is a route the server really has.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml } from 'yaml';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';
import { documentedFetch, openApiDocument } from '../helpers/openapi-responses.ts';

type Node = Record<string, any>;

describe('GET /openapi.json', () => {
  let t: TestServer;
  let served: Node;
  before(async () => {
    // With a metrics token, so GET /metrics is a route too.
    t = await startTestServer({ env: { DEEPSHI_METRICS_TOKEN: 'metrics-token-0123456789abcdef' } });
    const response = await documentedFetch(`${t.url}/openapi.json`);
    assert.equal(response.status, 200);
    served = response.body;
  });
  after(async () => {
    await t?.close();
  });

  it('is public, OpenAPI 3.1, and exactly the document the tests validate responses against', () => {
    assert.equal(served.openapi, '3.1.0');
    assert.deepEqual(served, openApiDocument);
    assert.deepEqual(served.servers, [{ url: '/', description: 'This Deepshi server' }]);
  });

  it('keeps the published contract: its operation and schemas are there, 3.0 nullable rewritten as 3.1 types', () => {
    const contract = parseYaml(fs.readFileSync(path.resolve(import.meta.dirname, '../../spec/openapi.yaml'), 'utf8'));
    const strip = (node: unknown): unknown => {
      if (Array.isArray(node)) return node.map(strip);
      if (node === null || typeof node !== 'object') return node;
      const out: Node = {};
      for (const [key, value] of Object.entries(node as Node)) if (key !== 'nullable') out[key] = strip(value);
      if ((node as Node).nullable === true) out.type = [(node as Node).type, 'null'];
      return out;
    };
    // The contract's operation unchanged: every response it promises is there as it is; we only add responses it does
    // not have (the 202 of a job, the idempotency, body-parser and upstream answers).
    const { responses, ...operation } = served.paths['/v1/images/generations'].post;
    const { responses: promised, ...contractOperation } = (strip(contract.paths['/v1/images/generations']) as Node).post;
    assert.deepEqual(operation, contractOperation);
    for (const [status, response] of Object.entries(promised as Node)) assert.deepEqual(responses[status], response, status);
    assert.ok(responses['202']);
    for (const name of Object.keys(contract.components.schemas)) assert.ok(served.components.schemas[name], name);
    assert.equal(JSON.stringify(served).includes('"nullable"'), false);
  });

  it('documents the whole public API, the dashboard and the console', () => {
    for (const route of [
      '/v1/images/generations',
      '/v1/images/edits',
      '/v1/images/quote',
      '/v1/models',
      '/v1/models/{model}',
      '/v1/account',
      '/v1/account/usage',
      '/v1/chat/completions',
      '/dashboard/api/session',
      '/dashboard/api/keys',
      '/dashboard/api/usage',
      '/dashboard/api/usage.csv',
      '/dashboard/api/ledger',
      '/dashboard/api/credit-codes/redeem',
      '/dashboard/api/playground-key',
      '/dashboard/api/models',
      '/admin/v1/credit-codes',
      '/admin/v1/stats',
    ]) {
      assert.ok(served.paths[route], route);
    }
    assert.ok(served.components.schemas.Cost.properties.total_cost, 'the contract extension field');
    assert.ok(served.components.schemas.ImageResponse.properties.warnings, 'our extension field on the contract schema');
    assert.deepEqual(served.paths['/dashboard/api/keys'].get.security, [{ SessionCookie: [] }]);
    assert.deepEqual(served.paths['/dashboard/api/config'].get.security, []);
    assert.deepEqual(served.paths['/dashboard/api/models'].get.security, [], 'the public models page needs no sign-in');
  });

  it('every operation it documents is a route the server has', () => {
    for (const [route, item] of Object.entries(served.paths as Node)) {
      for (const method of Object.keys(item as Node)) {
        const url = route === '/v1/models/{model}' ? '/v1/models/*' : route.replace(/\{([^}]+)\}/g, ':$1');
        assert.ok(t.server.app.hasRoute({ method: method.toUpperCase() as 'GET', url }), `${method.toUpperCase()} ${route} is not a route`);
      }
    }
  });

  it('every public route the server registers (/v1, /admin/v1, /dashboard/api) is documented, with each of its methods', () => {
    const routes = registeredRoutes(t.server.app.printRoutes({ commonPrefix: false }));
    // The parse of Fastify's route tree is itself checked: every route it yields is one the server has.
    for (const { url, methods } of routes)
      for (const method of methods) assert.ok(t.server.app.hasRoute({ method: method as 'GET', url }), `${method} ${url}`);
    const normalise = (route: string) => route.replace(/\{[^}]+\}|:[^/]+|\*/g, '{}');
    const documented = new Map(Object.entries(served.paths as Node).map(([route, item]) => [normalise(route), item as Node]));
    const publicRoutes = routes.filter(({ url }) => /^\/(v1|admin\/v1|dashboard\/api)\//.test(url) || url === '/v1');
    assert.ok(publicRoutes.length > 40, `found ${publicRoutes.length} public routes`);
    const missing: string[] = [];
    for (const { url, methods } of publicRoutes) {
      for (const method of methods.filter((method) => method !== 'HEAD' && method !== 'OPTIONS')) {
        if (!documented.get(normalise(url))?.[method.toLowerCase()]) missing.push(`${method} ${url}`);
      }
    }
    assert.deepEqual(missing, [], 'routes missing from /openapi.json');
    for (const route of [
      '/v1/images/jobs',
      '/v1/images/jobs/{id}',
      '/v1/images/jobs/{id}/cancel',
      '/v1/images/jobs/{id}/events',
      '/v1/files/{id}/content',
      '/admin/v1/accounts/{id}/webhook',
      '/admin/v1/accounts/{id}/webhook-secret',
    ]) {
      assert.ok(served.paths[route], route);
    }
  });

  it('every operation documents a 503 whose body is the error envelope (what a closing server answers, src/http/closing.ts)', () => {
    const errorBody = (response: Node): Node[] => {
      const resolved = response.$ref ? served.components.responses[String(response.$ref).split('/').pop()!] : response;
      const schema = resolved.content['application/json'].schema;
      return schema.oneOf ?? [schema];
    };
    for (const [route, item] of Object.entries(served.paths as Node))
      for (const [method, operation] of Object.entries(item as Node)) {
        const unavailable = operation.responses['503'];
        assert.ok(unavailable, `${method.toUpperCase()} ${route} documents no 503`);
        assert.ok(
          errorBody(unavailable).some((schema) => schema.$ref === '#/components/schemas/Error'),
          `${method.toUpperCase()} ${route}: its 503 is not the error envelope`,
        );
      }
    assert.match(served.components.responses.ShuttingDown.description, /server_shutting_down/);
  });

  it('documents the 202 job answer of generations and edits, and the async request fields', () => {
    for (const route of ['/v1/images/generations', '/v1/images/edits']) {
      assert.deepEqual(served.paths[route].post.responses['202'], { $ref: '#/components/responses/JobAccepted' }, route);
    }
    assert.deepEqual(served.components.responses.JobAccepted.content['application/json'].schema, { $ref: '#/components/schemas/ImageJob' });
    assert.equal(served.components.schemas.ImageGenerationRequest.properties.async.type, 'boolean');
    assert.ok(served.components.schemas.ImageGenerationRequest.properties.prompt, "the contract's fields are kept");
  });

  it("documents chat's n (up to the model's max_choices) and the text model card's limits", () => {
    const request = served.paths['/v1/chat/completions'].post.requestBody.content['application/json'].schema;
    assert.equal(request.properties.n.type, 'integer');
    assert.equal(request.properties.n.minimum, 1);
    assert.match(request.properties.n.description, /max_choices/);
    const model = served.components.schemas.Model.properties;
    for (const field of ['max_choices', 'context_window', 'max_output_tokens']) assert.equal(model[field].type, 'integer', field);
  });

  it('every reference resolves and every schema compiles as JSON Schema 2020-12', () => {
    const refs = new Set<string>();
    const walk = (node: unknown) => {
      if (Array.isArray(node)) return node.forEach(walk);
      if (node === null || typeof node !== 'object') return;
      for (const [key, value] of Object.entries(node as Node)) {
        if (key === '$ref') refs.add(String(value));
        else walk(value);
      }
    };
    walk(served);
    assert.ok(refs.size > 20);
    for (const ref of refs) {
      assert.match(ref, /^#\//);
      const target = ref
        .slice(2)
        .split('/')
        .reduce((node: any, part) => node?.[part.replace(/~1/g, '/').replace(/~0/g, '~')], served);
      assert.ok(target, `${ref} resolves`);
    }
    const ajv = new Ajv2020({ strict: false });
    ajv.addFormat('int64', true).addFormat('binary', true);
    ajv.addSchema({ ...served, $id: 'doc' });
    for (const name of Object.keys(served.components.schemas)) ajv.compile({ $ref: `doc#/components/schemas/${name}` });
  });
});

/** The routes in Fastify's printRoutes({ commonPrefix: false }) tree: each line's segment appended to its parent's path. */
function registeredRoutes(tree: string): { url: string; methods: string[] }[] {
  const routes: { url: string; methods: string[] }[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const match = /^((?:│ {3}| {4})*)[├└]── (.+) \(([^)]+)\)$/.exec(line);
    if (!match) continue;
    const depth = match[1].length / 4;
    const parent = depth === 0 ? '' : stack[depth - 1];
    let segment = match[2];
    // A wildcard's own '/' is folded into its parent's node in the printed tree (/v1/models/*, the CORS /*).
    if (segment === '*' && !parent.endsWith('/')) segment = `/${segment}`;
    const url = `${parent}${segment}`;
    stack[depth] = url;
    stack.length = depth + 1;
    routes.push({ url, methods: match[3].split(', ') });
  }
  return routes;
}
