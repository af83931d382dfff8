import { isRecord, readJsonBoolean, readJsonInteger } from './body-fields.ts';
import { invalidRequest } from '../domain/errors.ts';
import type { ChatReasoningRequest } from '../domain/requests.ts';

/** The feature fields of a chat request (tools, legacy functions, reasoning, response_format), read for chat-request.ts. */

/** OpenAI's rule for function names. */
const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Values of `reasoning_effort` (and `reasoning.effort`) across OpenAI's and OpenRouter's APIs. */
const REASONING_EFFORTS = ['none', 'minimal', 'low', 'medium', 'high', 'xhigh'];

/** Shapes of the feature fields, checked even when the model ignores them: bad input is a 400 either way. */
export function readFeatureFields(value: (name: string) => unknown): void {
  const tools = value('tools');
  if (tools !== undefined && !Array.isArray(tools))
    throw invalidRequest("'tools' must be an array of {type: 'function', function: {...}} objects.", 'tools', 'invalid_type');
  const names = new Set<string>();
  (tools as unknown[] | undefined)?.forEach((tool, index) => {
    const at = `tools[${index}]`;
    if (!isRecord(tool) || typeof tool.type !== 'string')
      throw invalidRequest(`'${at}' must be an object such as {"type": "function", "function": {"name": "…"}}.`, at, 'invalid_type');
    if (tool.type !== 'function') return;
    const fn = tool.function;
    if (!isRecord(fn) || typeof fn.name !== 'string' || !TOOL_NAME.test(fn.name)) {
      throw invalidRequest(
        `'${at}.function.name' must be 1-64 letters, digits, underscores or dashes.`,
        `${at}.function.name`,
        'invalid_value',
      );
    }
    if (fn.parameters !== undefined && fn.parameters !== null && !isRecord(fn.parameters)) {
      throw invalidRequest(`'${at}.function.parameters' must be a JSON Schema object.`, `${at}.function.parameters`, 'invalid_type');
    }
    names.add(fn.name);
  });
  const toolChoice = value('tool_choice');
  if (toolChoice !== undefined && typeof toolChoice !== 'string' && !isRecord(toolChoice)) {
    throw invalidRequest('\'tool_choice\' must be "none", "auto", "required" or a tool object.', 'tool_choice', 'invalid_type');
  }
  if (typeof toolChoice === 'string' && !['none', 'auto', 'required'].includes(toolChoice)) {
    throw invalidRequest(
      '\'tool_choice\' must be "none", "auto", "required" or {"type": "function", "function": {"name": …}}.',
      'tool_choice',
      'invalid_value',
    );
  }
  if (isRecord(toolChoice) && toolChoice.type === 'function') {
    const name = isRecord(toolChoice.function) ? toolChoice.function.name : undefined;
    if (typeof name !== 'string' || !names.has(name)) {
      throw invalidRequest(
        `'tool_choice' names a function that is not in 'tools': ${JSON.stringify(name ?? null).slice(0, 80)}.`,
        'tool_choice',
        'invalid_value',
      );
    }
  }
  readJsonBoolean(value('parallel_tool_calls'), 'parallel_tool_calls');
  readJsonBoolean(value('logprobs'), 'logprobs');
  const topLogprobs = readJsonInteger(value('top_logprobs'), 'top_logprobs');
  if (topLogprobs !== undefined && (topLogprobs < 0 || topLogprobs > 20))
    throw invalidRequest("'top_logprobs' must be between 0 and 20.", 'top_logprobs', 'invalid_value');
}

/**
 * The legacy `functions` / `function_call` fields as `tools` / `tool_choice` (and one call at a time, as functions were
 * answered): undefined when the request has none. Sending both the legacy and the current fields is a 400.
 */
export function readLegacyFunctions(value: (name: string) => unknown): Record<string, unknown> | undefined {
  const functions = value('functions');
  const functionCall = value('function_call');
  if (functions === undefined) {
    if (functionCall !== undefined)
      throw invalidRequest("'function_call' is only allowed when 'functions' are specified.", 'function_call', 'invalid_value');
    return undefined;
  }
  if (value('tools') !== undefined || value('tool_choice') !== undefined) {
    throw invalidRequest(
      "'functions' and 'tools' are the same setting in two shapes; send 'tools' (and 'tool_choice') only.",
      'functions',
      'invalid_value',
    );
  }
  if (!Array.isArray(functions))
    throw invalidRequest("'functions' must be an array of {name, description, parameters} objects.", 'functions', 'invalid_type');
  const names = new Set<string>();
  const tools = functions.map((fn, index) => {
    const at = `functions[${index}]`;
    if (!isRecord(fn) || typeof fn.name !== 'string' || !TOOL_NAME.test(fn.name)) {
      throw invalidRequest(`'${at}.name' must be 1-64 letters, digits, underscores or dashes.`, `${at}.name`, 'invalid_value');
    }
    if (fn.parameters !== undefined && fn.parameters !== null && !isRecord(fn.parameters)) {
      throw invalidRequest(`'${at}.parameters' must be a JSON Schema object.`, `${at}.parameters`, 'invalid_type');
    }
    names.add(fn.name);
    return { type: 'function', function: fn };
  });
  const out: Record<string, unknown> = { tools, parallel_tool_calls: false };
  if (functionCall === 'none' || functionCall === 'auto') out.tool_choice = functionCall;
  else if (isRecord(functionCall) && typeof functionCall.name === 'string' && names.has(functionCall.name)) {
    out.tool_choice = { type: 'function', function: { name: functionCall.name } };
  } else if (functionCall !== undefined) {
    throw invalidRequest(
      '\'function_call\' must be "none", "auto" or {"name": …} naming one of \'functions\'.',
      'function_call',
      'invalid_value',
    );
  }
  return out;
}

/**
 * `reasoning_effort` (OpenAI's) and `reasoning: {effort, max_tokens, exclude, enabled}` (OpenRouter's) as one setting.
 * Both may be given when they agree on the effort.
 */
export function readReasoning(effortRaw: unknown, raw: unknown): ChatReasoningRequest | undefined {
  const readEffort = (given: unknown, param: string) => {
    if (given === undefined || given === null) return undefined;
    if (typeof given !== 'string' || !REASONING_EFFORTS.includes(given)) {
      throw invalidRequest(`'${param}' must be one of ${REASONING_EFFORTS.join(', ')}.`, param, 'invalid_value');
    }
    return given;
  };
  const effort = readEffort(effortRaw, 'reasoning_effort');
  if (raw === undefined && effort === undefined) return undefined;
  const out: ChatReasoningRequest = {};
  if (effort !== undefined) out.effort = effort;
  if (raw !== undefined) {
    if (!isRecord(raw)) throw invalidRequest('\'reasoning\' must be an object such as {"effort": "high"}.', 'reasoning', 'invalid_type');
    const nested = readEffort(raw.effort, 'reasoning.effort');
    if (nested !== undefined && effort !== undefined && nested !== effort) {
      throw invalidRequest(
        "'reasoning_effort' and 'reasoning.effort' are the same setting; send one of them.",
        'reasoning_effort',
        'invalid_value',
      );
    }
    if (nested !== undefined) out.effort = nested;
    const maxTokens = readJsonInteger(raw.max_tokens, 'reasoning.max_tokens');
    if (maxTokens !== undefined) {
      if (maxTokens < 0)
        throw invalidRequest("'reasoning.max_tokens' must be at least 0.", 'reasoning.max_tokens', 'integer_below_min_value');
      out.maxTokens = maxTokens;
    }
    const exclude = readJsonBoolean(raw.exclude, 'reasoning.exclude');
    if (exclude !== undefined) out.exclude = exclude;
    const enabled = readJsonBoolean(raw.enabled, 'reasoning.enabled');
    if (enabled !== undefined) out.enabled = enabled;
  }
  return out;
}

export function readResponseFormat(raw: unknown): string | undefined {
  if (raw === undefined) return undefined;
  if (!isRecord(raw) || !['text', 'json_object', 'json_schema'].includes(raw.type as string)) {
    throw invalidRequest(
      '\'response_format\' must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}.',
      'response_format',
      'invalid_value',
    );
  }
  return raw.type as string;
}
