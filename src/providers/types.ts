import type {
  ChatFinishReason,
  ChatLogprobs,
  ChatMessage,
  ChatReasoningRequest,
  ChatRole,
  ChatToolCall,
  ChatToolCallDelta,
  ImageFormat,
  InputImage,
  NormalizedChatRequest,
  NormalizedImageRequest,
  ReasoningDetail,
  TokenLogprob,
} from '../domain/requests.ts';
import type { UpstreamUsage } from '../domain/usage.ts';
import type { Warning } from '../domain/warnings.ts';
import type { Base64Text } from '../images/base64.ts';

// The shared request and usage types live in domain/; adapters keep importing them from here.
export type {
  ChatFinishReason,
  ChatLogprobs,
  ChatMessage,
  ChatReasoningRequest,
  ChatRole,
  ChatToolCall,
  ChatToolCallDelta,
  ImageFormat,
  InputImage,
  NormalizedChatRequest,
  NormalizedImageRequest,
  ReasoningDetail,
  TokenLogprob,
  UpstreamUsage,
};

/**
 * The contract between the request pipeline and one upstream. An adapter knows one wire format and nothing
 * else: not HTTP status codes of our API, not the ledger, not keys. It gets a normalised request and
 * returns images (or throws a ProviderError), in the spirit of the Vercel AI SDK's ImageModel.
 */

export interface GeneratedImage {
  /** Base64 of the image bytes, kept as the upstream sent it where possible: a view of its body, no copy (images/base64.ts). */
  base64: Base64Text;
  mediaType: string;
  revisedPrompt?: string;
  /** True when request.outputCompression was applied to these bytes (encoded here, or sent to an upstream that honours it). */
  compressed?: boolean;
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
  /**
   * Called once an upstream that runs work as a job (BFL, fal) has accepted it, with what `resume` needs to collect the
   * result later from any instance (a polling URL, a request id). Async jobs persist it so a crash never resubmits.
   */
  onAccepted?: (handle: Record<string, unknown>) => void;
}

export interface RouteTarget {
  upstreamModel: string | undefined;
  baseUrl: string | undefined;
  credential: string | undefined;
  options: Record<string, unknown>;
  /** The route's `max_connections` (catalog), when set; the runner enforces it (services/billed-work.ts). */
  maxConnections?: number;
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
  /** Collects the result of a call accepted earlier (the handle given to onAccepted) without submitting again. */
  resume?(
    handle: Record<string, unknown>,
    request: NormalizedImageRequest,
    route: RouteTarget,
    context: ImageCallContext,
  ): Promise<ImageGenerationResult>;
}

/**
 * Text models: the contract between the chat pipeline and one upstream, next to the image one. The adapter gets a
 * validated, normalised chat request and returns the assistant's choices with the usage it measured (or throws a
 * ProviderError); while it generates it passes each piece of text to `onDelta`, in order, so streaming callers
 * forward them at once. It knows nothing of our HTTP framing, holds or keys.
 */
export interface ChatCompletionResult {
  /** One per choice (request.n, default 1), in index order: choices[i] is choice i. */
  choices: ChatChoiceResult[];
  /**
   * Token counts as the upstream measured them, for the whole request: inputTokens (cachedInputTokens among them) once,
   * outputTokens (reasoningTokens among them) across every choice.
   */
  usage: UpstreamUsage;
  warnings: Warning[];
}

/** One choice of an answer: the assistant message and why it ended. */
export interface ChatChoiceResult {
  /** The assistant message's whole content (the deltas passed to onDelta, joined). */
  content: string;
  finishReason: ChatFinishReason;
  /** The tool calls the model made (absent or empty: none), in index order; their deltas went to onToolCallDelta. */
  toolCalls?: ChatToolCall[];
  /** The model's reasoning trace as text (message.reasoning), when it sent one: every upstream spelling normalised. */
  reasoning?: string;
  /** The trace as structured segments (message.reasoning_details): the upstream's own, or one text segment built from the text. */
  reasoningDetails?: ReasoningDetail[];
  /** The model's refusal message (message.refusal), passed through as the upstream sent it. */
  refusal?: string;
  /** Token log-probabilities, when asked for and the upstream sent them. */
  logprobs?: ChatLogprobs;
}

/**
 * Where the pieces of a streamed answer go. Every hook gets first the index of the choice the piece belongs to (0 …
 * n − 1); pieces of different choices may interleave, pieces of one choice come in order.
 */
export interface TextCallContext {
  signal: AbortSignal;
  /**
   * Each piece of the answer as it is produced. Given only when the caller streams: an upstream adapter asks its
   * upstream for a stream exactly when this is set.
   */
  onDelta?: (choice: number, text: string, logprobs?: ChatLogprobs) => void;
  /**
   * Each piece of a tool call as it is produced (see ChatToolCallDelta), given with onDelta to a streaming caller.
   * Adapters that never call tools ignore it.
   */
  onToolCallDelta?: (choice: number, delta: ChatToolCallDelta) => void;
  /**
   * Each piece of the reasoning trace as it is produced (text, and the upstream's structured segments when it sends
   * them), given with onDelta to a streaming caller. A choice's reasoning comes before its content.
   */
  onReasoningDelta?: (choice: number, text: string, details?: ReasoningDetail[]) => void;
  /** Each piece of a refusal (delta.refusal) as it is produced, given with onDelta. */
  onRefusalDelta?: (choice: number, text: string, logprobs?: ChatLogprobs) => void;
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
