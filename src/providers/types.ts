import type { Warning } from '../domain/warnings.ts';
import type { Base64Text } from '../images/base64.ts';

/**
 * The contract between the request pipeline and one upstream. An adapter knows one wire format and nothing
 * else: not HTTP status codes of our API, not the ledger, not keys. It gets a normalised request and
 * returns images (or throws a ProviderError), in the spirit of the Vercel AI SDK's ImageModel.
 */

export type ImageFormat = 'png' | 'jpeg' | 'webp';

/** Our normalised request, after validation against the catalog entry. Every field is already checked. */
export interface NormalizedImageRequest {
  /** Public model id (catalog id). */
  model: string;
  prompt: string;
  n: number;
  seed: number | undefined;
  /** Output size the request resolves to (from width/height, tier table, preset or default). */
  width: number;
  height: number;
  /** Validated model-specific values, defaults applied: aspect_ratio, resolution, quality, image_size, ... */
  params: Record<string, string | number | boolean>;
  /** Format the caller asked for; undefined = the model's native format. */
  outputFormat: ImageFormat | undefined;
  /** 0 when not streaming. */
  partialImages: number;
  /** Unknown request fields, forwarded to the upstream as the spec says (adapters guard the fields they own). */
  extra: Record<string, unknown>;
  /** Reference images for edits (empty for generations). */
  inputImages: InputImage[];
}

export interface InputImage {
  bytes: Buffer;
  mediaType: 'image/png' | 'image/jpeg' | 'image/webp';
  width: number;
  height: number;
  filename?: string;
}

export interface GeneratedImage {
  /** Base64 of the image bytes, kept as the upstream sent it where possible: a view of its body, no copy (images/base64.ts). */
  base64: Base64Text;
  mediaType: string;
  revisedPrompt?: string;
}

/** What the upstream reports about usage; every field optional and untrusted until clamped by billing. */
export interface UpstreamUsage {
  inputTokens?: number;
  cachedInputTokens?: number;
  inputImageTokens?: number;
  outputTokens?: number;
  outputImageTokens?: number;
  reasoningTokens?: number;
  /** Cost the upstream itself reported, in nanos (BFL credits, xAI ticks...). */
  costNanos?: bigint;
  /** Images the upstream says it billed. */
  billedImages?: number;
}

export interface ImageGenerationResult {
  images: GeneratedImage[];
  warnings: Warning[];
  usage?: UpstreamUsage;
  /** True when every image was already passed to context.onImage (so the pipeline must not take them twice). */
  imagesDelivered?: boolean;
}

export interface PartialImage {
  base64: Base64Text;
  /** 0-based, increasing. */
  partialImageIndex: number;
  /** Which image of the batch this partial belongs to. */
  imageIndex: number;
}

export interface ImageCallContext {
  signal: AbortSignal;
  /** Called as partial renders arrive (only when request.partialImages > 0). */
  onPartialImage?: (partial: PartialImage) => void;
  /** Called for each finished image as soon as it is ready, before the whole batch resolves. */
  onImage?: (image: GeneratedImage, imageIndex: number) => void;
}

export interface RouteTarget {
  upstreamModel: string | undefined;
  baseUrl: string | undefined;
  credential: string | undefined;
  options: Record<string, unknown>;
}

export interface ImageAdapterCapabilities {
  /** Images one upstream call can return; the pipeline fans out above this. */
  maxImagesPerCall: number;
  supportsSeed: boolean;
  supportsPartialImages: boolean;
  supportsEdits: boolean;
  nativeFormats: ImageFormat[];
}

export interface ImageAdapter {
  readonly provider: string;
  /** Image adapters may leave it out; text adapters say 'text'. */
  readonly modality?: 'image';
  readonly capabilities: ImageAdapterCapabilities;
  /** Whether this adapter can be used with the given route (e.g. credentials present). */
  isConfigured(route: RouteTarget): boolean;
  generate(request: NormalizedImageRequest, route: RouteTarget, context: ImageCallContext): Promise<ImageGenerationResult>;
}

/**
 * Text models: the contract between the chat pipeline and one upstream, next to the image one. The adapter gets a
 * validated, normalised chat request and returns the assistant's message with the usage it measured (or throws a
 * ProviderError); while it generates it passes each piece of text to `onDelta`, in order, so streaming callers
 * forward them at once. It knows nothing of our HTTP framing, holds or keys.
 */
export type ChatRole = 'system' | 'developer' | 'user' | 'assistant' | 'tool';

export interface ChatMessage {
  role: ChatRole;
  /** The message's text: a string content, or its text parts joined ("" for an assistant turn with only tool calls). */
  content: string;
  name?: string;
  /** `tool` messages: the call they answer. */
  toolCallId?: string;
  /** `assistant` messages: the tool calls as the caller sent them (kept for upstreams; not interpreted here). */
  toolCalls?: unknown[];
}

/** Our normalised chat request, after validation against the catalog entry. Every field is already checked. */
export interface NormalizedChatRequest {
  /** Public model id (catalog id). */
  model: string;
  messages: ChatMessage[];
  /** Most completion tokens to produce: the request's max_tokens / max_completion_tokens, else the most the model and context allow. */
  maxOutputTokens: number;
  /** Up to 4 stop sequences; generation ends before the first one produced (excluded from the output). */
  stop: string[];
  /** Sampling values, only those the model honours (catalog `supported_sampling_parameters`); the rest were warned about. */
  sampling: { temperature?: number; topP?: number; seed?: number; frequencyPenalty?: number; presencePenalty?: number };
  /** Unknown request fields, forwarded to the upstream as the docs say (adapters guard the fields they own). */
  extra: Record<string, unknown>;
}

/** Why the answer ended: naturally or at a stop sequence, at max_tokens, or cut by the upstream's content filter. */
export type ChatFinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls';

/** A complete tool call of the assistant's answer (OpenAI's shape; `arguments` is the model's JSON text, unparsed). */
export interface ChatToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/**
 * One streamed piece of a tool call, in OpenAI's chunk shape. `index` numbers the calls of the answer from 0 in the
 * order they start; the first piece of a call carries `id`, `type` and `function.name` (and `function.arguments: ""`),
 * later pieces only `index` and a fragment of `function.arguments`. The fragments, joined, are the call's arguments.
 */
export interface ChatToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

export interface ChatCompletionResult {
  /** The assistant message's whole content (the deltas passed to onDelta, joined). */
  content: string;
  finishReason: ChatFinishReason;
  /** The tool calls the model made (absent or empty: none), in index order; their deltas went to onToolCallDelta. */
  toolCalls?: ChatToolCall[];
  /** Token counts as the upstream measured them: inputTokens (cachedInputTokens among them) and outputTokens. */
  usage: UpstreamUsage;
  warnings: Warning[];
}

export interface TextCallContext {
  signal: AbortSignal;
  /**
   * Each piece of the answer as it is produced. Given only when the caller streams: an upstream adapter asks its
   * upstream for a stream exactly when this is set.
   */
  onDelta?: (text: string) => void;
  /**
   * Each piece of a tool call as it is produced (see ChatToolCallDelta), given with onDelta to a streaming caller.
   * Adapters that never call tools (deepshi-echo) ignore it.
   */
  onToolCallDelta?: (delta: ChatToolCallDelta) => void;
}

export interface TextAdapter {
  readonly provider: string;
  /** Tells text adapters from image adapters in the registry (a provider id may have one of each, e.g. `offline`). */
  readonly modality: 'text';
  isConfigured(route: RouteTarget): boolean;
  /**
   * The most prompt tokens this upstream can bill for the request, known before the call: it sizes the hold and is
   * checked against the context window. Exact for a model that counts tokens itself, an upper bound otherwise.
   * `extra` (forwarded fields such as tools or a response schema, which upstreams count as prompt) when known.
   */
  countPromptTokens(request: Pick<NormalizedChatRequest, 'messages'> & Partial<Pick<NormalizedChatRequest, 'extra'>>): number;
  complete(request: NormalizedChatRequest, route: RouteTarget, context: TextCallContext): Promise<ChatCompletionResult>;
}

/** Every adapter the registry can hold. */
export type ProviderAdapter = ImageAdapter | TextAdapter;

/**
 * A failure reported by an upstream (or by talking to it). `kind` decides retry/failover and the caller's error:
 * - refused: content policy (never billed, 400 content_policy_violation)
 * - invalid_request: the upstream rejected a parameter (400, `param` when known)
 * - rate_limited: 429 from upstream (retryAfterSeconds when known)
 * - unavailable: connect error, 5xx, timeout before the upstream accepted the work (safe to fail over)
 * - failed: anything after acceptance or not safe to repeat
 * - misconfigured: upstream auth/config fault (operator's problem; never leaked to callers)
 */
export class ProviderError extends Error {
  readonly kind: 'refused' | 'invalid_request' | 'rate_limited' | 'unavailable' | 'failed' | 'misconfigured';
  readonly param: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly accepted: boolean;

  constructor(
    kind: ProviderError['kind'],
    message: string,
    options: { param?: string; retryAfterSeconds?: number; accepted?: boolean; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'ProviderError';
    this.kind = kind;
    this.param = options.param;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.accepted = options.accepted ?? false;
  }
}
