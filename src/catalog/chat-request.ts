import { isRecord, readJsonBoolean, readJsonInteger, readJsonNumber } from './body-fields.ts';
import { invalidRequest, missingParam } from '../domain/errors.ts';
import type { Warning } from '../domain/warnings.ts';
import type { ChatMessage, ChatRole, NormalizedChatRequest } from '../domain/requests.ts';
import type { TextCatalogModel } from './catalog.ts';
import type { TEXT_FEATURES } from './schema.ts';
import { readFeatureFields, readLegacyFunctions, readReasoning, readResponseFormat } from './chat-request-features.ts';

/**
 * Validates a caller's chat completion request against what the chosen text model declares and normalises it.
 * Rules (Deepshi's docs: "unsupported or model-specific fields are ignored rather than rejected"):
 * - the standard fields are validated everywhere; a malformed value is a 400 naming the param;
 * - a standard field the model does not honour (a sampling parameter not in `supported_sampling_parameters`, a
 *   feature such as `tools` not in `supported_features`) is ignored and reported back as a warning;
 * - any other unknown field is forwarded to the model in `extra`.
 * Null counts as absent, as with OpenAI.
 */

const ROLES: readonly ChatRole[] = ['system', 'developer', 'user', 'assistant', 'tool'];
const MAX_STOP_SEQUENCES = 4;

/** Fields that switch on an optional feature, and the feature a model must list to honour them. */
const FEATURE_FIELDS: Record<string, (typeof TEXT_FEATURES)[number]> = {
  tools: 'tools',
  tool_choice: 'tools',
  parallel_tool_calls: 'tools',
  functions: 'tools',
  function_call: 'tools',
  logprobs: 'logprobs',
  top_logprobs: 'logprobs',
};

/** Fields defined by the API itself (never forwarded as extras). */
const STANDARD_FIELDS = new Set([
  'model',
  'messages',
  'max_tokens',
  'max_completion_tokens',
  'stop',
  'stream',
  'stream_options',
  'n',
  'temperature',
  'top_p',
  'seed',
  'frequency_penalty',
  'presence_penalty',
  'logit_bias',
  'response_format',
  'user',
  'reasoning_effort',
  'reasoning',
  ...Object.keys(FEATURE_FIELDS),
]);

export interface ChatRequestEnvelope {
  /** The request without its output budget, which follows from the prompt's tokens (see resolveMaxOutputTokens). */
  request: Omit<NormalizedChatRequest, 'maxOutputTokens'>;
  /** max_tokens / max_completion_tokens as given, and which of the two names it came under. */
  maxTokens: { value: number; param: 'max_tokens' | 'max_completion_tokens' } | undefined;
  stream: boolean;
  /** stream_options.include_usage: a final chunk with usage (and cost) before [DONE]. */
  includeUsage: boolean;
  warnings: Warning[];
}

export function normalizeChatRequest(body: Record<string, unknown>, model: TextCatalogModel): ChatRequestEnvelope {
  const warnings: Warning[] = [];
  const value = (name: string) => (body[name] === null ? undefined : body[name]);
  const ignore = (param: string, why: string) =>
    warnings.push({ type: 'unsupported', param, message: `${model.id} ${why}; '${param}' was ignored.` });

  const messages = readMessages(body.messages, model);

  const n = readChoices(value('n'), model, ignore);

  const maxTokens = readMaxTokens(value('max_tokens'), value('max_completion_tokens'), model);

  const stream = readJsonBoolean(value('stream'), 'stream') ?? false;
  let includeUsage = false;
  const streamOptions = value('stream_options');
  if (streamOptions !== undefined) {
    if (!isRecord(streamOptions))
      throw invalidRequest('\'stream_options\' must be an object such as {"include_usage": true}.', 'stream_options', 'invalid_type');
    includeUsage =
      readJsonBoolean(streamOptions.include_usage === null ? undefined : streamOptions.include_usage, 'stream_options.include_usage') ??
      false;
    if (!stream) {
      warnings.push({ type: 'other', param: 'stream_options', message: "'stream_options' applies only with 'stream': true; ignored." });
      includeUsage = false;
    }
  }

  // Sampling: validated always, honoured when the model lists it, otherwise ignored with a warning.
  const honours = (param: (typeof model.supported_sampling_parameters)[number]) => model.supported_sampling_parameters.includes(param);
  const sampling: NormalizedChatRequest['sampling'] = {};
  const temperature = readJsonNumber(value('temperature'), 'temperature', 0, 2);
  const topP = readJsonNumber(value('top_p'), 'top_p', 0, 1);
  const frequencyPenalty = readJsonNumber(value('frequency_penalty'), 'frequency_penalty', -2, 2);
  const presencePenalty = readJsonNumber(value('presence_penalty'), 'presence_penalty', -2, 2);
  const seed = readJsonInteger(value('seed'), 'seed');
  const numbers: Array<
    [
      Exclude<keyof NormalizedChatRequest['sampling'], 'logitBias'>,
      'temperature' | 'top_p' | 'frequency_penalty' | 'presence_penalty' | 'seed',
      number | undefined,
    ]
  > = [
    ['temperature', 'temperature', temperature],
    ['topP', 'top_p', topP],
    ['frequencyPenalty', 'frequency_penalty', frequencyPenalty],
    ['presencePenalty', 'presence_penalty', presencePenalty],
    ['seed', 'seed', seed],
  ];
  for (const [field, param, given] of numbers) {
    if (given === undefined) continue;
    if (honours(param)) sampling[field] = given;
    else ignore(param, `does not support '${param}' (see supported_sampling_parameters in GET /v1/models)`);
  }
  const logitBias = value('logit_bias');
  if (logitBias !== undefined) {
    if (!isRecord(logitBias) || Object.values(logitBias).some((bias) => typeof bias !== 'number' || !(bias >= -100 && bias <= 100))) {
      throw invalidRequest(
        "'logit_bias' must be an object mapping token ids to numbers between -100 and 100.",
        'logit_bias',
        'invalid_type',
      );
    }
    if (honours('logit_bias')) sampling.logitBias = logitBias as Record<string, number>;
    else ignore('logit_bias', "does not support 'logit_bias'");
  }
  let stop = readStop(value('stop'));
  if (stop.length > 0 && !honours('stop')) {
    ignore('stop', "does not support 'stop'");
    stop = [];
  }

  // Optional features: validated for shape, forwarded when the model has the feature, otherwise ignored with a warning.
  const forwarded: Record<string, unknown> = {};
  readFeatureFields(value);
  const legacy = readLegacyFunctions(value);
  const legacyFunctions = legacy !== undefined && model.supported_features.includes('tools');
  if (legacyFunctions) Object.assign(forwarded, legacy);
  for (const [param, feature] of Object.entries(FEATURE_FIELDS)) {
    if (value(param) === undefined) continue;
    if (legacyFunctions && (param === 'functions' || param === 'function_call')) continue;
    if (model.supported_features.includes(feature)) forwarded[param] = value(param);
    else ignore(param, `does not support ${feature === 'tools' ? 'tool calling' : feature}`);
  }
  const responseFormat = readResponseFormat(value('response_format'));
  if (responseFormat !== undefined && responseFormat !== 'text') {
    const feature = responseFormat === 'json_object' ? 'json' : 'structured';
    if (model.supported_features.includes(feature)) forwarded.response_format = value('response_format');
    else ignore('response_format', `does not support response_format ${responseFormat}; it answers in plain text`);
  }
  const reasoning = readReasoning(value('reasoning_effort'), value('reasoning'));
  if (reasoning !== undefined && !model.supported_features.includes('reasoning')) {
    for (const param of ['reasoning_effort', 'reasoning']) if (value(param) !== undefined) ignore(param, 'is not a reasoning model');
  }
  const user = value('user');
  if (user !== undefined && typeof user !== 'string') throw invalidRequest("'user' must be a string.", 'user', 'invalid_type');

  const extra: Record<string, unknown> = { ...forwarded };
  for (const [key, item] of Object.entries(body)) {
    if (!STANDARD_FIELDS.has(key)) extra[key] = item;
  }

  const request: ChatRequestEnvelope['request'] = { model: model.id, messages, stop, sampling, extra };
  if (n > 1) request.n = n;
  if (legacyFunctions) request.legacyFunctions = true;
  if (reasoning !== undefined && model.supported_features.includes('reasoning')) request.reasoning = reasoning;
  return { request, maxTokens, stream, includeUsage, warnings };
}

/**
 * The completion budget: max_tokens as given (400 when it cannot fit the context window with the prompt), else the
 * most the model and the context window allow. A prompt that alone fills the context window is a 400 on `messages`.
 */
export function resolveMaxOutputTokens(model: TextCatalogModel, promptTokens: number, maxTokens: ChatRequestEnvelope['maxTokens']): number {
  const room = model.context_window - promptTokens;
  if (room < 1) {
    throw invalidRequest(
      `${model.id}'s context window is ${model.context_window} tokens; the messages take ${promptTokens}, leaving no room for a completion. Shorten the conversation.`,
      'messages',
      'context_length_exceeded',
    );
  }
  if (maxTokens === undefined) return Math.min(model.max_output_tokens, room);
  if (maxTokens.value > room) {
    throw invalidRequest(
      `${model.id}'s context window is ${model.context_window} tokens; you asked for ${promptTokens} in the messages and ${maxTokens.value} in the completion. Lower '${maxTokens.param}' to at most ${room} or shorten the messages.`,
      maxTokens.param,
      'context_length_exceeded',
    );
  }
  return maxTokens.value;
}

function readMessages(raw: unknown, model: TextCatalogModel): ChatMessage[] {
  if (raw === undefined || raw === null) throw missingParam('messages');
  if (!Array.isArray(raw))
    throw invalidRequest("'messages' must be an array of message objects, oldest first.", 'messages', 'invalid_type');
  if (raw.length === 0) throw invalidRequest("'messages' must contain at least one message.", 'messages', 'empty_array');
  // The legacy shapes of a function call in the history: an assistant `function_call` becomes a tool call with an id
  // of ours, and a `function` message the tool message answering the latest one.
  let legacyCall: string | undefined;
  return raw.map((original, index): ChatMessage => {
    const at = `messages[${index}]`;
    if (!isRecord(original)) throw invalidRequest(`'${at}' must be an object with 'role' and 'content'.`, at, 'invalid_type');
    let item = original;
    if (item.role === 'function') {
      if (legacyCall === undefined)
        throw invalidRequest(
          `'${at}': a 'function' message must follow an assistant message with 'function_call'.`,
          `${at}.role`,
          'invalid_value',
        );
      const { name: _, ...rest } = item;
      item = { ...rest, role: 'tool', tool_call_id: legacyCall };
    } else if (item.role === 'assistant' && isRecord(item.function_call) && (item.tool_calls === undefined || item.tool_calls === null)) {
      const call = item.function_call;
      if (typeof call.name !== 'string' || typeof call.arguments !== 'string') {
        throw invalidRequest(
          `'${at}.function_call' must be {"name": …, "arguments": "<JSON text>"}.`,
          `${at}.function_call`,
          'invalid_value',
        );
      }
      legacyCall = `call_legacy_${index}`;
      const { function_call: _, ...rest } = item;
      item = { ...rest, tool_calls: [{ id: legacyCall, type: 'function', function: { name: call.name, arguments: call.arguments } }] };
    }
    const role = item.role;
    if (role === undefined || role === null) throw missingParam(`${at}.role`);
    if (typeof role !== 'string' || !ROLES.includes(role as ChatRole)) {
      throw invalidRequest(
        `Invalid value for '${at}.role': ${JSON.stringify(role).slice(0, 40)}. Supported roles are ${ROLES.join(', ')}.`,
        `${at}.role`,
        'invalid_value',
      );
    }
    const message: ChatMessage = { role: role as ChatRole, content: '' };
    const toolCalls = item.tool_calls === null ? undefined : item.tool_calls;
    if (toolCalls !== undefined) {
      if (role !== 'assistant' || !Array.isArray(toolCalls))
        throw invalidRequest(`'${at}.tool_calls' is an array, on assistant messages only.`, `${at}.tool_calls`, 'invalid_value');
      message.toolCalls = toolCalls;
    }
    const content = item.content;
    if (content === undefined || content === null) {
      // An assistant turn may carry only tool calls (OpenAI's shape); every other message needs content.
      if (role !== 'assistant') throw missingParam(`${at}.content`);
    } else {
      message.content = readContent(content, at, role as ChatRole, model);
    }
    if (item.name !== undefined && item.name !== null) {
      if (typeof item.name !== 'string') throw invalidRequest(`'${at}.name' must be a string.`, `${at}.name`, 'invalid_type');
      message.name = item.name;
    }
    if (role === 'tool') {
      if (typeof item.tool_call_id !== 'string' || item.tool_call_id === '') throw missingParam(`${at}.tool_call_id`);
      message.toolCallId = item.tool_call_id;
    }
    return message;
  });
}

/** A string, or an array of content parts of which this model takes the text ones. */
function readContent(content: unknown, at: string, role: ChatRole, model: TextCatalogModel): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content))
    throw invalidRequest(`'${at}.content' must be a string or an array of content parts.`, `${at}.content`, 'invalid_type');
  const texts: string[] = [];
  content.forEach((part, index) => {
    const where = `${at}.content[${index}]`;
    if (!isRecord(part) || typeof part.type !== 'string')
      throw invalidRequest(`'${where}' must be an object with a 'type', e.g. {"type":"text","text":"…"}.`, where, 'invalid_type');
    if (part.type === 'text' || (part.type === 'refusal' && role === 'assistant')) {
      const text = part.type === 'text' ? part.text : part.refusal;
      if (typeof text !== 'string')
        throw invalidRequest(`'${where}.${part.type}' must be a string.`, `${where}.${part.type}`, 'invalid_type');
      texts.push(text);
      return;
    }
    const takes = model.modalities.input.join(' and ');
    throw invalidRequest(
      `${model.id} takes ${takes} input only; content parts of type ${JSON.stringify(part.type).slice(0, 40)} are not supported.`,
      `${where}.type`,
      'invalid_value',
    );
  });
  return texts.join('\n');
}

function readMaxTokens(maxTokens: unknown, maxCompletionTokens: unknown, model: TextCatalogModel): ChatRequestEnvelope['maxTokens'] {
  const read = (raw: unknown, param: 'max_tokens' | 'max_completion_tokens') => {
    const given = readJsonInteger(raw, param);
    if (given === undefined) return undefined;
    if (given < 1) throw invalidRequest(`'${param}' must be at least 1; got ${given}.`, param, 'integer_below_min_value');
    if (given > model.max_output_tokens) {
      throw invalidRequest(
        `${model.id} produces at most ${model.max_output_tokens} completion tokens per request; '${param}' is ${given}.`,
        param,
        'integer_above_max_value',
      );
    }
    return { value: given, param };
  };
  const legacy = read(maxTokens, 'max_tokens');
  const current = read(maxCompletionTokens, 'max_completion_tokens');
  if (legacy && current && legacy.value !== current.value) {
    throw invalidRequest("'max_tokens' and 'max_completion_tokens' are the same setting; send one of them.", 'max_tokens', 'invalid_value');
  }
  return current ?? legacy;
}

/**
 * `n`, the choices to produce: up to the model's `max_choices` (catalog). A model that answers one choice ignores a
 * larger `n` with a warning (the docs' rule for unsupported fields); on a model that serves several, more than it
 * serves is a 400, since silently answering fewer choices than asked (and billed) would not be honest.
 */
function readChoices(raw: unknown, model: TextCatalogModel, ignore: (param: string, why: string) => void): number {
  const n = readJsonInteger(raw, 'n');
  if (n === undefined) return 1;
  if (n < 1) throw invalidRequest(`'n' must be at least 1; got ${n}.`, 'n', 'integer_below_min_value');
  if (n === 1) return 1;
  if (model.max_choices === 1) {
    ignore('n', `returns one choice per request (asked for ${n})`);
    return 1;
  }
  if (n > model.max_choices) {
    throw invalidRequest(
      `${model.id} returns at most ${model.max_choices} choices per request; 'n' is ${n}. Lower 'n' to ${model.max_choices} or fewer, or send several requests.`,
      'n',
      'integer_above_max_value',
    );
  }
  return n;
}

function readStop(raw: unknown): string[] {
  if (raw === undefined) return [];
  const list = typeof raw === 'string' ? [raw] : raw;
  if (!Array.isArray(list) || list.some((item) => typeof item !== 'string')) {
    throw invalidRequest("'stop' must be a string or an array of up to 4 strings.", 'stop', 'invalid_type');
  }
  if (list.length > MAX_STOP_SEQUENCES)
    throw invalidRequest(`'stop' takes at most ${MAX_STOP_SEQUENCES} sequences; got ${list.length}.`, 'stop', 'array_above_max_length');
  if (list.some((item) => item === '')) throw invalidRequest("'stop' sequences must not be empty strings.", 'stop', 'invalid_value');
  return list as string[];
}
