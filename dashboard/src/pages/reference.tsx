import type { ComponentChildren } from 'preact';
import { request } from '../api.ts';
import { ErrorNote, Loading, PageHeader, useAsync } from '../components.tsx';

// A small renderer of the server's own /openapi.json: no third-party viewer, nothing fetched from elsewhere.

type Schema = Record<string, any>;
interface Operation {
  method: string;
  path: string;
  operation: Record<string, any>;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

export function ReferencePage() {
  const spec = useAsync(() => request<Record<string, any>>('GET', '/openapi.json'), []);
  if (spec.loading) return <Loading what="Loading the API reference" />;
  if (spec.error || !spec.data) return <ErrorNote error={spec.error ?? new Error('No API description.')} />;
  const document = spec.data;
  const groups = groupByTag(document);
  return (
    <section class="reference">
      <PageHeader title="API reference" />
      <p class="lead">
        {document.info?.title} {document.info?.version ? <span class="muted">v{document.info.version}</span> : null}
      </p>
      {document.info?.description ? <Text text={document.info.description} /> : null}
      <p>
        The machine-readable document is at <a href="/openapi.json">/openapi.json</a> (OpenAPI {document.openapi}).
      </p>
      <div class="reference-layout">
        <nav aria-label="Endpoints" class="toc vertical">
          {groups.map(([tag, operations]) => (
            <div key={tag}>
              <h2 class="toc-heading">{tag}</h2>
              {operations.map((entry) => (
                <a href={`#${anchor(entry)}`} key={anchor(entry)}>
                  <span class={`method method-${entry.method}`}>{entry.method.toUpperCase()}</span> {entry.path}
                </a>
              ))}
            </div>
          ))}
        </nav>
        <div>
          {groups.map(([tag, operations]) => (
            <section key={tag} aria-labelledby={`tag-${tag}`}>
              <h2 id={`tag-${tag}`}>{tag}</h2>
              {operations.map((entry) => (
                <OperationView entry={entry} document={document} key={anchor(entry)} />
              ))}
            </section>
          ))}
        </div>
      </div>
    </section>
  );
}

function groupByTag(document: Record<string, any>): [string, Operation[]][] {
  const groups = new Map<string, Operation[]>();
  for (const [path, item] of Object.entries<Record<string, any>>(document.paths ?? {})) {
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const tag = operation.tags?.[0] ?? 'Other';
      const list = groups.get(tag) ?? [];
      list.push({ method, path, operation: { ...operation, parameters: [...(item.parameters ?? []), ...(operation.parameters ?? [])] } });
      groups.set(tag, list);
    }
  }
  return [...groups];
}

const anchor = (entry: Operation) => `${entry.method}-${entry.path.replace(/[^a-zA-Z0-9]+/g, '-')}`;

function OperationView({ entry, document }: { entry: Operation; document: Record<string, any> }) {
  const { operation } = entry;
  const parameters = (operation.parameters as Schema[]).map((parameter) => resolve(document, parameter));
  const body = operation.requestBody ? resolve(document, operation.requestBody) : undefined;
  return (
    <article class="card operation" id={anchor(entry)}>
      <h3>
        <span class={`method method-${entry.method}`}>{entry.method.toUpperCase()}</span> <code>{entry.path}</code>
      </h3>
      {operation.summary ? <p>
        <strong>{operation.summary}</strong>
      </p> : null}
      {operation.description ? <Text text={operation.description} /> : null}
      {operation.security?.length === 0 ? <p class="muted small">No authentication.</p> : null}
      {parameters.length ? (
        <table class="params">
          <caption>Parameters</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">In</th>
              <th scope="col">Type</th>
              <th scope="col">Description</th>
            </tr>
          </thead>
          <tbody>
            {parameters.map((parameter) => (
              <tr key={`${parameter.in}-${parameter.name}`}>
                <th scope="row">
                  <code>{parameter.name}</code>
                  {parameter.required ? <span class="required"> required</span> : null}
                </th>
                <td>{parameter.in}</td>
                <td>{typeName(document, parameter.schema ?? {})}</td>
                <td>{parameter.description ? <Text text={parameter.description} /> : null}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {body?.content ? (
        <section>
          <h4>Request body{body.required ? ' (required)' : ''}</h4>
          {Object.entries<Schema>(body.content).map(([type, media]) => (
            <details key={type} open={type === 'application/json'}>
              <summary>
                <code>{type}</code>
              </summary>
              <SchemaView document={document} schema={media.schema ?? {}} depth={0} seen={new Set()} />
            </details>
          ))}
        </section>
      ) : null}
      {operation.responses ? (
        <section>
          <h4>Responses</h4>
          {Object.entries<Schema>(operation.responses).map(([status, raw]) => {
            const response = resolve(document, raw);
            return (
              <details key={status}>
                <summary>
                  <span class={`status status-${status[0]}`}>{status}</span> {response.description}
                </summary>
                {Object.entries<Schema>(response.content ?? {}).map(([type, media]) => (
                  <div key={type}>
                    <p class="muted small">
                      <code>{type}</code>
                    </p>
                    <SchemaView document={document} schema={media.schema ?? {}} depth={0} seen={new Set()} />
                  </div>
                ))}
              </details>
            );
          })}
        </section>
      ) : null}
    </article>
  );
}

function resolve(document: Record<string, any>, value: Schema): Schema {
  let current = value;
  for (let hops = 0; current && typeof current.$ref === 'string' && hops < 20; hops++) {
    const path = current.$ref.replace(/^#\//, '').split('/').map((part: string) => part.replace(/~1/g, '/').replace(/~0/g, '~'));
    let target: any = document;
    for (const part of path) target = target?.[part];
    if (!target) break;
    const { $ref: _ref, ...siblings } = current;
    current = { ...target, ...siblings };
  }
  return current;
}

function refName(schema: Schema): string | undefined {
  return typeof schema.$ref === 'string' ? schema.$ref.split('/').pop() : undefined;
}

function typeName(document: Record<string, any>, raw: Schema): string {
  const name = refName(raw);
  const schema = resolve(document, raw);
  if (schema.enum) return schema.enum.map((value: unknown) => JSON.stringify(value)).join(' | ');
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  const type = Array.isArray(schema.type) ? schema.type.join(' | ') : schema.type;
  if (type === 'array') return `${typeName(document, schema.items ?? {})}[]`;
  if (schema.oneOf || schema.anyOf) return (schema.oneOf ?? schema.anyOf).map((part: Schema) => typeName(document, part)).join(' | ');
  const format = schema.format ? ` (${schema.format})` : '';
  return name ?? (type ? `${type}${format}` : 'any');
}

function SchemaView({ document, schema: raw, depth, seen }: { document: Record<string, any>; schema: Schema; depth: number; seen: Set<string> }) {
  const name = refName(raw);
  if (name && seen.has(name)) return <p class="muted small">{name} (see above)</p>;
  const nextSeen = name ? new Set([...seen, name]) : seen;
  const schema = resolve(document, raw);
  if (depth > 6) return <p class="muted small">{typeName(document, raw)}</p>;
  const variants: Schema[] | undefined = schema.oneOf ?? schema.anyOf;
  const parts: Schema[] | undefined = schema.allOf;
  if (parts) {
    return (
      <>
        {parts.map((part, index) => (
          <SchemaView key={index} document={document} schema={part} depth={depth + 1} seen={nextSeen} />
        ))}
      </>
    );
  }
  if (variants && !schema.properties) {
    return (
      <div class="schema-variants">
        <p class="muted small">One of:</p>
        <ul>
          {variants.map((variant, index) => (
            <li key={index}>
              <SchemaView document={document} schema={variant} depth={depth + 1} seen={nextSeen} />
            </li>
          ))}
        </ul>
      </div>
    );
  }
  const type = Array.isArray(schema.type) ? schema.type.join(' | ') : schema.type;
  if (type === 'array' && schema.items) {
    return (
      <div>
        <p class="muted small">Array of {typeName(document, schema.items)}</p>
        <SchemaView document={document} schema={schema.items} depth={depth + 1} seen={nextSeen} />
      </div>
    );
  }
  const properties = Object.entries<Schema>(schema.properties ?? {});
  if (!properties.length) {
    return schema.description ? <Text text={schema.description} /> : <p class="muted small">{typeName(document, raw)}</p>;
  }
  const required = new Set<string>(schema.required ?? []);
  return (
    <ul class="schema">
      {properties.map(([property, value]) => {
        const resolved = resolve(document, value);
        const nested = resolved.properties || resolved.allOf || (resolved.type === 'array' && resolve(document, resolved.items ?? {}).properties);
        return (
          <li key={property}>
            <code>{property}</code> <span class="type">{typeName(document, value)}</span>
            {required.has(property) ? <span class="required"> required</span> : null}
            {resolved.description ? <Text text={resolved.description} /> : null}
            {nested && depth < 6 ? (
              <details>
                <summary>fields</summary>
                <SchemaView document={document} schema={value} depth={depth + 1} seen={nextSeen} />
              </details>
            ) : null}
          </li>
        );
      })}
    </ul>
  );
}

/** Descriptions are Markdown; this keeps paragraphs, `code` and **bold**, and shows the rest as plain text. */
function Text({ text }: { text: string }) {
  return (
    <div class="prose">
      {String(text)
        .split(/\n{2,}/)
        .map((paragraph, index) => (
          <p key={index}>{inlineMarkdown(paragraph)}</p>
        ))}
    </div>
  );
}

function inlineMarkdown(text: string): ComponentChildren {
  return text.split(/(`[^`]+`|\*\*[^*]+\*\*)/).map((part, index) => {
    if (part.length > 2 && part.startsWith('`') && part.endsWith('`')) return <code key={index}>{part.slice(1, -1)}</code>;
    if (part.length > 4 && part.startsWith('**') && part.endsWith('**')) return <strong key={index}>{part.slice(2, -2)}</strong>;
    return part;
  });
}
