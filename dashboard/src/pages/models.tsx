import { Fragment } from 'preact';
import { ErrorNote, Loading, PageHeader, useAsync } from '../components.tsx';
import { explainPrice, listOfferedModels, SIZING_STYLES, type ModelCard, type ParameterSpec } from '../models.ts';
import { useSession } from '../session.tsx';
import { usd } from '../format.ts';

/** Every model this server offers, as the page a caller reads before choosing one: public, signed in or not. */
export function ModelsPage() {
  const { user } = useSession();
  const models = useAsync(() => listOfferedModels(), []);
  return (
    <section>
      <PageHeader title="Models & pricing" />
      <p class="lead">
        Every model this server offers, with the request fields it takes and what a request costs. Call any of them with an OpenAI SDK at <code>/v1</code> and
        the model id.
      </p>
      {user === null ? (
        <p class="notice" role="status">
          <a href={`/signin?next=${encodeURIComponent('/models')}`}>Sign in</a> to get a key and try them in the playground.
        </p>
      ) : null}
      {models.loading ? (
        <Loading what="Loading models" />
      ) : (
        <>
          <ErrorNote error={models.error} />
          <nav aria-label="Models on this page" class="toc">
            {models.data?.map((model) => (
              <a href={`#model-${model.id}`}>{model.id}</a>
            ))}
          </nav>
          <div class="cards">{models.data?.map((model) => <ModelCardView model={model} key={model.id} />)}</div>
        </>
      )}
    </section>
  );
}

export function ModelCardView({ model }: { model: ModelCard }) {
  const price = explainPrice(model);
  const parameters = Object.entries(model.parameters).filter(([name]) => !['prompt', 'messages', 'stream', 'stream_options', 'response_format'].includes(name));
  return (
    <article class="card model-card" id={`model-${model.id}`} aria-labelledby={`model-${model.id}-title`} data-testid="model-card">
      <header>
        <h2 id={`model-${model.id}-title`}>
          <code>{model.id}</code>
        </h2>
        <p class="muted">
          {model.name ?? model.id} · {model.owned_by} · {model.kind === 'image' ? 'image generation' : 'text (chat)'}
        </p>
      </header>
      {model.description ? <p>{model.description}</p> : null}
      <dl class="facts">
        {model.kind === 'image' ? (
          <>
            <dt>Sizing</dt>
            <dd>
              {SIZING_STYLES[model.sizing?.style ?? ''] ?? model.sizing?.style} — fields {model.sizing?.fields.map((field, index) => <Fragment key={field}>{index ? ', ' : ''}<code>{field}</code></Fragment>)}
            </dd>
            {model.sizing?.custom_size ? (
              <>
                <dt>Custom sizes</dt>
                <dd>{describeCustomSize(model.sizing.custom_size)}</dd>
              </>
            ) : null}
            <dt>Prompt limit</dt>
            <dd>{model.prompt_max_length?.toLocaleString()} characters</dd>
            <dt>Images per request</dt>
            <dd>1–{model.max_n}</dd>
            <dt>Output formats</dt>
            <dd>{model.output_formats?.join(', ')}</dd>
            <dt>Edits</dt>
            <dd>{model.edit?.supported ? `yes, up to ${model.edit.max_images} reference image${model.edit.max_images === 1 ? '' : 's'}` : 'no'}</dd>
            <dt>Streaming</dt>
            <dd>{model.streaming ? `yes${model.parameters.partial_images ? `, up to ${model.parameters.partial_images.max} partial images` : ''}` : 'no (the stream sends the final images)'}</dd>
          </>
        ) : (
          <>
            <dt>Context window</dt>
            <dd>{model.context_window?.toLocaleString()} tokens</dd>
            <dt>Most output tokens</dt>
            <dd>{model.max_output_tokens?.toLocaleString()}</dd>
            <dt>Features</dt>
            <dd>{model.supported_features?.length ? model.supported_features.join(', ') : '—'}</dd>
          </>
        )}
      </dl>
      {model.sizing?.sizes ? <SizeTable sizes={model.sizing.sizes} /> : null}
      {parameters.length ? (
        <table class="params">
          <caption>Parameters</caption>
          <thead>
            <tr>
              <th scope="col">Field</th>
              <th scope="col">Allowed values</th>
              <th scope="col">Default</th>
            </tr>
          </thead>
          <tbody>
            {parameters.map(([name, spec]) => (
              <tr key={name}>
                <th scope="row">
                  <code>{name}</code>
                </th>
                <td>
                  {allowedValues(spec)}
                  {spec.description ? <div class="muted small">{spec.description}</div> : null}
                </td>
                <td>{spec.default === undefined ? '—' : <code>{String(spec.default)}</code>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <section class="price" aria-label={`Price of ${model.id}`}>
        <h3>Price</h3>
        <p>{price.rule}</p>
        <p>
          <strong>Example:</strong> {price.example}
        </p>
        {price.settlement ? <p class="muted small">{price.settlement}</p> : null}
        {model.pricing.table ? (
          <table class="params">
            <caption>Price per image by {model.pricing.by?.join(' / ')}</caption>
            <tbody>
              {Object.entries(model.pricing.table).map(([key, value]) => (
                <tr key={key}>
                  <th scope="row">{key}</th>
                  <td>{usd(value)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </section>
    </article>
  );
}

export function allowedValues(spec: ParameterSpec): string {
  if (spec.enum) return spec.enum.join(', ');
  const parts: string[] = [spec.type];
  if (spec.min !== undefined || spec.max !== undefined) parts.push(`${spec.min ?? '…'}–${spec.max ?? '…'}`);
  if (spec.multiple_of) parts.push(`multiple of ${spec.multiple_of}`);
  if (spec.max_length) parts.push(`up to ${spec.max_length} characters`);
  return parts.join(', ');
}

function describeCustomSize(custom: NonNullable<NonNullable<ModelCard['sizing']>['custom_size']>): string {
  const parts: string[] = [];
  if (custom.min_side !== undefined || custom.max_side !== undefined) parts.push(`sides ${custom.min_side ?? '…'}–${custom.max_side ?? '…'} px`);
  if (custom.multiple_of) parts.push(`multiples of ${custom.multiple_of}`);
  if (custom.max_pixels) parts.push(`at most ${custom.max_pixels.toLocaleString()} pixels`);
  return parts.join(', ') || 'any';
}

/** sizes: {tier: {ratio: "WxH"}} or {name: "WxH"}. */
function SizeTable({ sizes }: { sizes: Record<string, unknown> }) {
  const entries = Object.entries(sizes);
  const nested = entries.every(([, value]) => value && typeof value === 'object');
  if (!nested) {
    return (
      <table class="params">
        <caption>Sizes</caption>
        <tbody>
          {entries.map(([name, size]) => (
            <tr key={name}>
              <th scope="row">{name}</th>
              <td>{String(size)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    );
  }
  const ratios = [...new Set(entries.flatMap(([, value]) => Object.keys(value as object)))];
  return (
    <div class="size-grid" data-testid="size-grid">
      <table class="params sizes">
        <caption>Sizes in pixels</caption>
        <thead>
          <tr>
            <th scope="col">Tier</th>
            {ratios.map((ratio) => (
              <th scope="col" key={ratio}>
                {ratio}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {entries.map(([tier, row]) => (
            <tr key={tier}>
              <th scope="row">{tier}</th>
              {ratios.map((ratio) => (
                <td key={ratio}>{String((row as Record<string, string>)[ratio] ?? '—')}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
