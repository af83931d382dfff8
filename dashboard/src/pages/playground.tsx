import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, request, send } from '../api.ts';
import { CopyButton, ErrorNote, Field, Loading, PageHeader, errorMessage, useAccountScope, useAsync, useQueryState, value } from '../components.tsx';
import { fromNanos, toNanos, usd } from '../format.ts';
import { explainPrice, listModels, type ModelCard, type ParameterSpec } from '../models.ts';
import { temporaryKey } from '../session.tsx';
import { chatSnippets, imageSnippets, type Snippets } from '../snippets.ts';
import { readEventStream } from '../sse.ts';

// The playground calls /v1 exactly as any client does, with the temporary key the server issues for this session
// (kept in memory only, see session.tsx). The model, mode, prompt and every parameter live in the URL.

/** Query names that are page state, not request fields. */
const PAGE_STATE = new Set(['model', 'mode', 'size_by', 'account_id']);
/** Request fields the page sets itself. */
const FIXED = new Set(['prompt', 'response_format', 'stream', 'messages', 'stream_options', 'max_completion_tokens']);

export function PlaygroundPage() {
  const { accountId } = useAccountScope();
  const [query, setQuery] = useQueryState();
  const models = useAsync(() => listModels(accountId), [accountId]);
  const model = models.data?.find((card) => card.id === query.model) ?? models.data?.[0];

  const chooseModel = (id: string) => {
    // A new model starts from its own defaults: drop the previous model's fields from the URL.
    const reset: Record<string, null | string> = { model: id, mode: null, size_by: null };
    for (const name of Object.keys(query)) if (!PAGE_STATE.has(name) && name !== 'prompt') reset[name] = null;
    setQuery(reset);
  };

  return (
    <section>
      <PageHeader title="Playground" />
      {models.loading && !models.data ? <Loading what="Loading models" /> : null}
      <ErrorNote error={models.error} />
      {model ? (
        <>
          <div class="row">
            <Field label="Model">
              <select value={model.id} onChange={(event) => chooseModel(value(event))} data-testid="model-picker">
                {models.data!.map((card) => (
                  <option value={card.id} key={card.id}>
                    {card.id} — {card.kind === 'image' ? 'image' : 'text'}
                  </option>
                ))}
              </select>
            </Field>
            <p class="muted small">{model.description}</p>
          </div>
          {model.kind === 'image' ? <ImagePlayground model={model} key={model.id} /> : <ChatPlayground model={model} key={model.id} />}
        </>
      ) : null}
    </section>
  );
}

// --- controls generated from the model card's parameters -------------------------------------------------------

function parseValue(spec: ParameterSpec, text: string | undefined): unknown {
  if (text === undefined || text === '') return undefined;
  if (spec.type === 'integer' || spec.type === 'number') {
    const number = Number(text);
    return Number.isFinite(number) ? number : text;
  }
  if (spec.type === 'boolean') return text === 'true';
  if (spec.enum && typeof spec.enum[0] === 'number') return Number(text);
  return text;
}

function ParameterControl({ name, spec, text, onChange, error }: { name: string; spec: ParameterSpec; text: string | undefined; onChange: (text: string | null) => void; error?: string }) {
  const id = `param-${name}`;
  const hint = (
    <>
      {spec.description ?? null}
      {error ? (
        <span class="error" role="alert">
          {error}
        </span>
      ) : null}
    </>
  );
  const shown = text ?? (spec.default === undefined ? '' : String(spec.default));
  if (spec.enum) {
    return (
      <Field label={name} hint={hint}>
        <select id={id} value={shown} onChange={(event) => onChange(value(event))}>
          {spec.default === undefined ? <option value="">(model default)</option> : null}
          {spec.enum.map((option) => (
            <option key={String(option)} value={String(option)}>
              {String(option)}
            </option>
          ))}
        </select>
      </Field>
    );
  }
  if (spec.type === 'boolean') {
    return (
      <label class="checks">
        <input type="checkbox" checked={shown === 'true'} onChange={(event) => onChange(event.currentTarget.checked ? 'true' : 'false')} /> {name}
      </label>
    );
  }
  if (spec.type === 'integer' || spec.type === 'number') {
    const step = spec.multiple_of ?? (spec.type === 'integer' ? 1 : 0.01);
    const sliding = spec.min !== undefined && spec.max !== undefined && (spec.max - spec.min) / step <= 10_000;
    return (
      <Field label={name} hint={hint}>
        <div class="row">
          {sliding ? (
            <input
              type="range"
              aria-label={`${name} slider`}
              min={spec.min}
              max={spec.max}
              step={step}
              value={shown === '' ? String(spec.min) : shown}
              onInput={(event) => onChange(value(event))}
            />
          ) : null}
          <input
            type="number"
            id={id}
            aria-label={name}
            min={spec.min}
            max={spec.max}
            step={step}
            value={shown}
            placeholder={spec.default === undefined ? 'model default' : undefined}
            onChange={(event) => onChange(value(event) === '' ? null : value(event))}
          />
        </div>
      </Field>
    );
  }
  if (spec.type === 'string') {
    return (
      <Field label={name} hint={hint}>
        <input type="text" id={id} value={shown} maxLength={spec.max_length} onChange={(event) => onChange(value(event) || null)} />
      </Field>
    );
  }
  return null;
}

/** Sizing: a model whose sizes can be given two ways (pixels, or ratio + tier) shows one way at a time. */
function sizingFields(model: ModelCard, sizeBy: string | undefined): { hidden: Set<string>; choice?: 'pixels' | 'ratio' } {
  const fields = model.sizing?.fields ?? [];
  const pixels = fields.includes('width') && fields.includes('height');
  const ratio = fields.includes('aspect_ratio');
  if (!(pixels && ratio)) return { hidden: new Set() };
  const choice = sizeBy === 'pixels' ? 'pixels' : 'ratio';
  return { hidden: new Set(choice === 'pixels' ? ['aspect_ratio', 'resolution'] : ['width', 'height']), choice };
}

// --- images --------------------------------------------------------------------------------------------------

interface ImageResult {
  index: number;
  url: string;
  size: string;
  cost: string;
  format: string;
}
interface Run {
  id: number;
  mode: 'generate' | 'edit';
  prompt: string;
  startedAt: number;
  finishedAt?: number;
  keepalives: number;
  partials: Record<number, string>;
  images: ImageResult[];
  quote?: string;
  requestId?: string | null;
  error?: string;
}

const numberToUsd = (amount: number) => fromNanos(toNanos(amount.toFixed(9)));

function ImagePlayground({ model }: { model: ModelCard }) {
  const { accountId } = useAccountScope();
  const [query, setQuery] = useQueryState();
  const editable = Boolean(model.edit?.supported);
  const mode: 'generate' | 'edit' = editable && query.mode === 'edit' ? 'edit' : 'generate';
  const sizing = sizingFields(model, query.size_by);
  const controls = Object.entries(model.parameters).filter(([name]) => !FIXED.has(name) && !sizing.hidden.has(name));
  const prompt = query.prompt ?? '';
  const [references, setReferences] = useState<{ file: File; url: string }[]>([]);
  const [quote, setQuote] = useState<{ total: string; exact: boolean; references: number; key: string } | undefined>();
  const [quoteError, setQuoteError] = useState<ApiError | Error | undefined>();
  const [runs, setRuns] = useState<Run[]>([]);
  const [running, setRunning] = useState(false);
  const [now, setNow] = useState(Date.now());
  const [compare, setCompare] = useState<string[]>([]);
  const abort = useRef<AbortController | undefined>(undefined);

  // The request body: the fields set in the URL, as the card's types.
  const body: Record<string, unknown> = { model: model.id, prompt };
  for (const [name, spec] of controls) {
    const parsed = parseValue(spec, query[name]);
    if (parsed !== undefined) body[name] = parsed;
  }
  // What is sent: the body streamed; an edit adds its reference images (the same form for the edit and its quote).
  const sent = { ...body, stream: true };
  const quoted = mode === 'edit' ? references : [];
  // A price is shown only for the request as it is now: the fields, the mode and the very reference files.
  const quoteKey = JSON.stringify([mode, body, quoted.map((reference) => reference.url)]);
  const shownQuote = quote?.key === quoteKey ? quote : undefined;

  // The exact price, from the server, before generating (debounced while typing): the quote of this very request.
  // An edit is quoted with its form and reference images (multipart), so the price includes what they cost; the stream
  // fields stay in, as a token-priced model's hold counts the partial images.
  useEffect(() => {
    if (!prompt.trim() || (mode === 'edit' && quoted.length === 0)) {
      setQuote(undefined);
      setQuoteError(undefined);
      return;
    }
    const controller = new AbortController();
    const timer = setTimeout(async () => {
      try {
        const apiKey = await temporaryKey(accountId);
        const answer = await request<{ cost: { total_cost: number }; exact?: boolean }>('POST', '/v1/images/quote', {
          apiKey,
          body: mode === 'edit' ? editForm(sent, quoted) : sent,
          signal: controller.signal,
        });
        setQuote({ total: numberToUsd(answer.cost.total_cost), exact: answer.exact !== false, references: quoted.length, key: quoteKey });
        setQuoteError(undefined);
      } catch (error) {
        if ((error as Error).name === 'AbortError') return;
        setQuote(undefined);
        setQuoteError(error as Error);
      }
    }, 300);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [quoteKey, accountId]);

  useEffect(() => {
    if (!running) return;
    const timer = setInterval(() => setNow(Date.now()), 100);
    return () => clearInterval(timer);
  }, [running]);

  // Reference images dropped or pasted anywhere on the page while editing.
  const addFiles = (files: Iterable<File>) => {
    const images = [...files].filter((file) => /^image\/(png|jpeg|webp)$/.test(file.type));
    setReferences((current) => [...current, ...images.map((file) => ({ file, url: URL.createObjectURL(file) }))].slice(0, model.edit?.max_images ?? 1));
  };
  useEffect(() => {
    if (mode !== 'edit') return;
    const onPaste = (event: ClipboardEvent) => {
      const files = [...(event.clipboardData?.files ?? [])];
      if (files.length) {
        event.preventDefault();
        addFiles(files);
      }
    };
    window.addEventListener('paste', onPaste);
    return () => window.removeEventListener('paste', onPaste);
  }, [mode]);

  const update = (run: Run, change: (current: Run) => Run) => setRuns((all) => all.map((item) => (item.id === run.id ? change(item) : item)));

  const generate = async (event: Event) => {
    event.preventDefault();
    const run: Run = { id: Date.now(), mode, prompt, startedAt: Date.now(), keepalives: 0, partials: {}, images: [], quote: shownQuote?.total };
    setRuns((all) => [run, ...all]);
    setRunning(true);
    setNow(Date.now());
    const controller = new AbortController();
    abort.current = controller;
    try {
      const apiKey = await temporaryKey(accountId);
      let response: Response;
      if (mode === 'edit') {
        response = await send('POST', '/v1/images/edits', { apiKey, body: editForm(sent, references), signal: controller.signal });
      } else {
        response = await send('POST', '/v1/images/generations', { apiKey, body: sent, signal: controller.signal });
      }
      const requestId = response.headers.get('x-request-id');
      update(run, (current) => ({ ...current, requestId }));
      await readEventStream(
        response,
        {
          onKeepalive: () => update(run, (current) => ({ ...current, keepalives: current.keepalives + 1 })),
          onEvent: (data: any) => {
            if (data.type === 'error') {
              update(run, (current) => ({ ...current, error: data.error?.message ?? 'The generation failed.' }));
            } else if (String(data.type).endsWith('.partial_image')) {
              const url = `data:image/${data.output_format ?? 'png'};base64,${data.b64_json}`;
              update(run, (current) => ({ ...current, partials: { ...current.partials, [data.image_index ?? 0]: url } }));
            } else if (String(data.type).endsWith('.completed')) {
              const format = data.output_format ?? 'png';
              const image: ImageResult = {
                index: data.index ?? 0,
                url: `data:image/${format};base64,${data.b64_json}`,
                size: data.size,
                cost: numberToUsd(Number(data.usage?.cost?.total_cost ?? 0)),
                format,
              };
              update(run, (current) => ({ ...current, images: [...current.images, image] }));
            }
          },
        },
        controller.signal,
      );
    } catch (error) {
      update(run, (current) => ({ ...current, error: (error as Error).name === 'AbortError' ? 'Stopped.' : errorMessage(error) }));
    } finally {
      update(run, (current) => ({ ...current, finishedAt: Date.now() }));
      setRunning(false);
    }
  };

  const snippets = imageSnippets(location.origin, body, mode === 'edit' ? Math.max(references.length, 1) : 0);
  const paramError = (name: string) => (quoteError instanceof ApiError && quoteError.param === name ? quoteError.message : undefined);
  const priced = explainPrice(model);

  return (
    <div class="playground">
      <form class="card stack" onSubmit={generate} aria-label="Request">
        {editable ? (
          <fieldset>
            <legend>Mode</legend>
            <div class="checks">
              <label>
                <input type="radio" name="mode" checked={mode === 'generate'} onChange={() => setQuery({ mode: null })} /> Generate
              </label>
              <label>
                <input type="radio" name="mode" checked={mode === 'edit'} onChange={() => setQuery({ mode: 'edit' })} /> Edit reference images
              </label>
            </div>
          </fieldset>
        ) : null}
        <Field label="Prompt" hint={`${prompt.length} / ${model.prompt_max_length ?? '∞'} characters`}>
          <textarea name="prompt" required maxLength={model.prompt_max_length} value={prompt} onInput={(event) => setQuery({ prompt: value(event) })} rows={4} />
        </Field>
        {mode === 'edit' ? <References references={references} max={model.edit?.max_images ?? 1} onAdd={addFiles} onRemove={(index) => setReferences((current) => current.filter((_, position) => position !== index))} /> : null}
        {sizing.choice ? (
          <fieldset>
            <legend>Size by</legend>
            <div class="checks">
              <label>
                <input type="radio" name="size_by" checked={sizing.choice === 'ratio'} onChange={() => setQuery({ size_by: null, width: null, height: null })} /> Aspect ratio and resolution
              </label>
              <label>
                <input type="radio" name="size_by" checked={sizing.choice === 'pixels'} onChange={() => setQuery({ size_by: 'pixels', aspect_ratio: null, resolution: null })} /> Width and height
              </label>
            </div>
          </fieldset>
        ) : null}
        {controls.map(([name, spec]) => (
          <ParameterControl key={name} name={name} spec={spec} text={query[name]} error={paramError(name)} onChange={(text) => setQuery({ [name]: text })} />
        ))}
        <div class="card" aria-live="polite">
          <div class="muted small">Price before generating</div>
          {shownQuote ? (
            <div class="quote" data-testid="quote" data-references={shownQuote.references}>
              {shownQuote.exact ? '' : 'at most '}
              {usd(shownQuote.total)}
            </div>
          ) : mode === 'edit' && prompt.trim() && !references.length ? (
            <span class="muted small">Add a reference image to see the exact price of the edit.</span>
          ) : prompt.trim() ? (
            quoteError && !(quoteError instanceof ApiError && quoteError.param && model.parameters[quoteError.param]) ? <ErrorNote error={quoteError} /> : <span class="muted">…</span>
          ) : (
            <span class="muted small">Enter a prompt to see the exact price.</span>
          )}
          <div class="muted small">{priced.rule}</div>
          {mode === 'edit' && (model.pricing.per_input_image || model.pricing.input_megapixel) ? <div class="muted small">Reference images are charged on top, as the rule says; the price above includes them.</div> : null}
        </div>
        <div class="row">
          <button type="submit" disabled={running || !prompt.trim() || (mode === 'edit' && references.length === 0)}>
            {running ? 'Generating…' : mode === 'edit' ? 'Edit' : 'Generate'}
          </button>
          {running ? (
            <button type="button" class="secondary" onClick={() => abort.current?.abort()}>
              Stop
            </button>
          ) : null}
        </div>
      </form>
      <div>
        <Results runs={runs} now={now} compare={compare} setCompare={setCompare} />
        <CodeTabs snippets={snippets} />
      </div>
    </div>
  );
}

/** An edit's form: the fields as strings, the reference files under image[]. The edit and its quote send the same. */
function editForm(fields: Record<string, unknown>, references: { file: File }[]): FormData {
  const form = new FormData();
  for (const [name, field] of Object.entries(fields)) form.append(name, typeof field === 'object' ? JSON.stringify(field) : String(field));
  for (const reference of references) form.append('image[]', reference.file, reference.file.name);
  return form;
}

function References({ references, max, onAdd, onRemove }: { references: { file: File; url: string }[]; max: number; onAdd: (files: Iterable<File>) => void; onRemove: (index: number) => void }) {
  const [over, setOver] = useState(false);
  return (
    <div
      class={`dropzone ${over ? 'active' : ''}`}
      onDragOver={(event) => {
        event.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(event) => {
        event.preventDefault();
        setOver(false);
        onAdd(event.dataTransfer?.files ?? []);
      }}
    >
      <Field label={`Reference images (up to ${max})`} hint="Drop PNG, JPEG or WebP files here, paste them, or choose them.">
        <input type="file" accept="image/png,image/jpeg,image/webp" multiple onChange={(event) => onAdd(event.currentTarget.files ?? [])} />
      </Field>
      {references.length ? (
        <div class="thumbs">
          {references.map((reference, index) => (
            <figure key={reference.url}>
              <img src={reference.url} alt={`Reference ${index + 1}: ${reference.file.name}`} />
              <button type="button" class="secondary small" aria-label={`Remove reference ${index + 1}`} onClick={() => onRemove(index)}>
                Remove
              </button>
            </figure>
          ))}
        </div>
      ) : null}
    </div>
  );
}

function Results({ runs, now, compare, setCompare }: { runs: Run[]; now: number; compare: string[]; setCompare: (keys: string[]) => void }) {
  if (!runs.length) return <p class="muted">Results appear here, newest first.</p>;
  const all = runs.flatMap((run) => run.images.map((image) => ({ key: `${run.id}:${image.index}`, run, image })));
  const compared = compare.map((key) => all.find((item) => item.key === key)).filter(Boolean) as typeof all;
  return (
    <div class="stack">
      {compared.length === 2 ? (
        <section class="card" aria-label="Comparison">
          <div class="page-header">
            <h2>Compare</h2>
            <button type="button" class="secondary" onClick={() => setCompare([])}>
              Close comparison
            </button>
          </div>
          <div class="results compare">
            {compared.map(({ key, run, image }) => (
              <figure class="result" key={key}>
                <img src={image.url} alt={`Image ${image.index + 1}: ${run.prompt}`} />
                <figcaption>{run.prompt}</figcaption>
              </figure>
            ))}
          </div>
        </section>
      ) : null}
      {runs.map((run) => {
        const charged = run.images.length ? fromNanos(run.images.reduce((sum, image) => sum + toNanos(image.cost), 0n)) : undefined;
        const elapsed = ((run.finishedAt ?? now) - run.startedAt) / 1000;
        return (
          <section class="card" key={run.id} aria-label={`Run: ${run.prompt}`} data-testid="run" data-partials={Object.keys(run.partials).length}>
            <div class="progress" role="status">
              <strong>{run.finishedAt ? (run.error && !run.images.length ? 'Failed' : 'Done') : 'Generating…'}</strong>
              <span data-testid="elapsed">{elapsed.toFixed(1)} s</span>
              {!run.finishedAt && run.keepalives ? <span class="muted small">still working ({run.keepalives} keepalive{run.keepalives === 1 ? '' : 's'})</span> : null}
              {run.quote ? <span>Quoted <span data-testid="run-quote">{usd(run.quote)}</span></span> : null}
              {charged !== undefined ? <span>Charged <strong data-testid="charged">{usd(charged)}</strong></span> : null}
              {run.requestId ? <span class="muted small mono">{run.requestId}</span> : null}
            </div>
            {run.error ? <p class="error" role="alert">{run.error}</p> : null}
            <div class="results">
              {run.images.length === 0
                ? Object.entries(run.partials).map(([index, url]) => (
                    <figure class="result partial" key={index}>
                      <img src={url} alt={`Partial image ${Number(index) + 1} (in progress)`} />
                      <figcaption>partial</figcaption>
                    </figure>
                  ))
                : null}
              {run.images.map((image) => {
                const key = `${run.id}:${image.index}`;
                return (
                  <figure class="result" key={key}>
                    <img src={image.url} alt={`Image ${image.index + 1}: ${run.prompt}`} data-testid="result-image" />
                    <figcaption>
                      <span>
                        {image.size} · {usd(image.cost)}
                      </span>
                      <a href={image.url} download={`deepshi-${run.requestId ?? run.id}-${image.index + 1}.${image.format}`}>
                        Download
                      </a>
                      <label class="checks">
                        <input
                          type="checkbox"
                          checked={compare.includes(key)}
                          onChange={(event) => setCompare(event.currentTarget.checked ? [...compare, key].slice(-2) : compare.filter((item) => item !== key))}
                        />
                        Compare
                      </label>
                    </figcaption>
                  </figure>
                );
              })}
            </div>
          </section>
        );
      })}
    </div>
  );
}

function CodeTabs({ snippets }: { snippets: Snippets }) {
  const [tab, setTab] = useState<keyof Snippets>('curl');
  const labels: Record<keyof Snippets, string> = { curl: 'curl', node: 'Node (openai)', python: 'Python (openai)' };
  return (
    <section class="card" aria-labelledby="code-title">
      <h2 id="code-title">This request as code</h2>
      <div class="tabs" role="tablist" aria-label="Language">
        {(Object.keys(labels) as (keyof Snippets)[]).map((name) => (
          <button type="button" role="tab" aria-selected={tab === name} key={name} onClick={() => setTab(name)}>
            {labels[name]}
          </button>
        ))}
      </div>
      <pre data-testid="snippet">{snippets[tab]}</pre>
      <CopyButton text={snippets[tab]} label={`Copy ${labels[tab]}`} />
      <p class="muted small">Set DEEPSHI_API_KEY to one of your keys (API keys page); the playground's own key is never shown.</p>
    </section>
  );
}

// --- chat ----------------------------------------------------------------------------------------------------

interface ChatMessage {
  role: 'user' | 'assistant';
  content: string;
  cost?: string;
}

function ChatPlayground({ model }: { model: ModelCard }) {
  const { accountId } = useAccountScope();
  const [query, setQuery] = useQueryState();
  const [messages, setMessages] = useState<ChatMessage[]>([]);
  const [input, setInput] = useState('');
  const [error, setError] = useState<unknown>();
  const [running, setRunning] = useState(false);
  const controls = Object.entries(model.parameters).filter(([name]) => !FIXED.has(name) && !['n', 'logit_bias', 'stop'].includes(name));
  const options: Record<string, unknown> = {};
  for (const [name, spec] of controls) {
    const parsed = parseValue(spec, query[name]);
    if (parsed !== undefined) options[name] = parsed;
  }
  const history = (extra?: string) => [...messages.map(({ role, content }) => ({ role, content })), ...(extra ? [{ role: 'user' as const, content: extra }] : [])];
  const body = { model: model.id, messages: history(input || 'Hello!'), ...options };

  const sendMessage = async (event: Event) => {
    event.preventDefault();
    if (!input.trim()) return;
    const sent = history(input);
    setMessages([...sent, { role: 'assistant', content: '' }]);
    setInput('');
    setRunning(true);
    setError(undefined);
    const setReply = (change: (reply: ChatMessage) => ChatMessage) => setMessages((all) => [...all.slice(0, -1), change(all[all.length - 1])]);
    try {
      const apiKey = await temporaryKey(accountId);
      const response = await send('POST', '/v1/chat/completions', {
        apiKey,
        body: { model: model.id, messages: sent, ...options, stream: true, stream_options: { include_usage: true } },
      });
      await readEventStream(response, {
        onEvent: (chunk: any) => {
          if (chunk.error) throw new ApiError(chunk.error.message, 500, chunk.error.code ?? null, null);
          const delta = chunk.choices?.[0]?.delta?.content;
          if (delta) setReply((reply) => ({ ...reply, content: reply.content + delta }));
          if (chunk.usage?.cost?.total_cost !== undefined) setReply((reply) => ({ ...reply, cost: numberToUsd(Number(chunk.usage.cost.total_cost)) }));
        },
      });
    } catch (caught) {
      setError(caught);
    } finally {
      setRunning(false);
    }
  };

  return (
    <div class="playground">
      <div class="card stack" aria-label="Settings">
        {controls.map(([name, spec]) => (
          <ParameterControl key={name} name={name} spec={spec} text={query[name]} onChange={(text) => setQuery({ [name]: text })} />
        ))}
        <p class="muted small">{explainPrice(model).rule}</p>
      </div>
      <div>
        <section class="card" aria-label="Chat">
          <div class="chat-log" aria-live="polite">
            {messages.map((message, index) => (
              <div class={`chat-message ${message.role}`} key={index} data-testid={`chat-${message.role}`}>
                <div class="muted small">
                  {message.role === 'user' ? 'You' : model.id}
                  {message.cost ? ` · ${usd(message.cost)}` : ''}
                </div>
                {message.content}
              </div>
            ))}
          </div>
          <form class="stack" onSubmit={sendMessage}>
            <Field label="Message">
              <textarea
                value={input}
                rows={3}
                onInput={(event) => setInput(value(event))}
                onKeyDown={(event) => {
                  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) sendMessage(event);
                }}
              />
            </Field>
            <ErrorNote error={error} />
            <div class="row">
              <button type="submit" disabled={running || !input.trim()}>
                {running ? 'Answering…' : 'Send'}
              </button>
              <button type="button" class="secondary" onClick={() => setMessages([])} disabled={running}>
                Clear
              </button>
              <span class="muted small">Ctrl+Enter sends.</span>
            </div>
          </form>
        </section>
        <CodeTabs snippets={chatSnippets(location.origin, body)} />
      </div>
    </div>
  );
}
