/**
 * The normalised requests every layer shares: built and validated by the catalog (catalog/image-request.ts,
 * catalog/chat-request.ts), priced by billing, carried out by a provider adapter. Every field is already checked.
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
  /**
   * OpenAI's `output_compression` (0-100, the jpeg/webp encoder quality; 100 = least compression), set only when the
   * output is jpeg or webp. Applied by adapters that encode themselves or send it upstream (they mark such images
   * `compressed`), and by the gateway when it transcodes; otherwise reported back as not applied.
   */
  outputCompression?: number;
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
  /**
   * The caller used the legacy `functions` / `function_call` fields: they were mapped to `tools` / `tool_choice` (one
   * call at a time), and the answer goes back in their shape (`message.function_call`, finish `function_call`).
   */
  legacyFunctions?: boolean;
  /** Public model id (catalog id). */
  model: string;
  messages: ChatMessage[];
  /**
   * Choices to produce (OpenAI's `n`), present only when above 1 and the model serves several (catalog `max_choices`);
   * each choice has its own `maxOutputTokens` budget.
   */
  n?: number;
  /** Most completion tokens to produce: the request's max_tokens / max_completion_tokens, else the most the model and context allow. */
  maxOutputTokens: number;
  /** Up to 4 stop sequences; generation ends before the first one produced (excluded from the output). */
  stop: string[];
  /** Sampling values, only those the model honours (catalog `supported_sampling_parameters`); the rest were warned about. */
  sampling: {
    temperature?: number;
    topP?: number;
    seed?: number;
    frequencyPenalty?: number;
    presencePenalty?: number;
    logitBias?: Record<string, number>;
  };
  /**
   * The caller's reasoning settings (`reasoning_effort`, or `reasoning: {effort, max_tokens, exclude, enabled}`), present
   * only when the model lists `reasoning`; the adapter sends them in the field its route takes.
   */
  reasoning?: ChatReasoningRequest;
  /** Unknown request fields, forwarded to the upstream as the docs say (adapters guard the fields they own). */
  extra: Record<string, unknown>;
}

/** Why the answer ended: naturally or at a stop sequence, at max_tokens, or cut by the upstream's content filter. */
/** What the caller asked of the model's reasoning, from `reasoning_effort` and/or `reasoning` (null fields dropped). */
export interface ChatReasoningRequest {
  effort?: string;
  maxTokens?: number;
  /** Reason, but leave the trace out of the answer. */
  exclude?: boolean;
  enabled?: boolean;
}

/** One token's log-probability, with the most likely alternatives when top_logprobs was asked (OpenAI's shape). */
export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] | null }>;
}

/** `choices[].logprobs` of a completion or a chunk: the content's tokens and the refusal's. */
export interface ChatLogprobs {
  content: TokenLogprob[] | null;
  refusal: TokenLogprob[] | null;
}

/** One segment of a reasoning trace, in OpenRouter's shape (`reasoning.text`, `reasoning.summary`, `reasoning.encrypted`). */
export type ReasoningDetail = Record<string, unknown> & { type: string };

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
