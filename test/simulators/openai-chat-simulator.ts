import type { ServerResponse } from 'node:http';
import { sendJson, startRecordingServer, type RecordedRequest } from './recording-server.ts';

/**
 * A local OpenAI chat completions server (`POST /v1/chat/completions`), test code only. Like OpenAI it checks the
 * Bearer key (401 envelope), validates the body (400 naming the `param`: model, messages and their roles, numeric
 * ranges, max_tokens / max_completion_tokens, stop, stream_options only with stream, and any field it does not know:
 * "Unrecognized request argument"), answers a `chat.completion` with `usage` including
 * `prompt_tokens_details.cached_tokens`, or streams SSE chunks: role, content pieces, finish, the usage chunk when
 * `stream_options.include_usage`, then `data: [DONE]`. Every request is recorded before it is answered.
 *
 * The answer is "Reply: " + the last user message, cut before the first stop sequence (finish "stop") or at
 * max tokens (finish "length"). Its own token rule (not a real tokenizer, but within Deepshi's UTF-8 byte bound):
 * a text is ceil(characters / 4) tokens, each prompt message adds 3, the reply 3. Content streams in pieces of
 * `pieceTokens` tokens (4 characters each).
 *
 * Tool calls: when the request has `tools` (not `tool_choice: "none"`) and the last message is a user message starting
 * with "call:", the answer is tool calls instead (finish "tool_calls", content null): one per tool, or only the first
 * with `parallel_tool_calls: false`, or only the named one with a specific `tool_choice`. Call i has id `call_sim_i`,
 * the tool's name and arguments `{"query":"<the text after call:, trimmed>","n":i}`; streamed as a first piece (index,
 * id, type, name, arguments "") then argument fragments of `pieceTokens` tokens. A conversation whose last message is
 * a `tool` message gets the text answer "Tool said: " + its content. Like OpenAI it checks that every assistant
 * `tool_calls` is answered by `tool` messages with those ids, and that `tool` messages answer one. Tokens: `tools`
 * add ceil(JSON characters / 4) to the prompt, an assistant message's `tool_calls` add their JSON to its text, and a
 * tool-call answer costs simToolCallTokens.
 *
 * Also, as OpenAI and vLLM do: `n` choices (choice i > 0 answers "Reply <i+1>: …", its tool call ids end in `_c<i>`;
 * usage counts the prompt once and every choice's completion tokens; streamed with the choices interleaved, one chunk
 * of each in turn, each chunk naming its `index`, the role chunks of all first); `logprobs` / `top_logprobs`
 * (simTokenLogprobs, on every content or refusal chunk when streaming); a refusal (content null, `refusal`
 * SIM_REFUSAL) to a user message starting with "refuse:"; and, with `reasoning` set, a reasoning model in vLLM's manner:
 * a trace (simReasoning, showing `reasoning_effort`) before the answer under the configured name, sharing the
 * max tokens budget with it, counted in completion_tokens and in completion_tokens_details.reasoning_tokens (unless
 * `reportReasoningTokens` is false, as on vLLM).
 */

export type ChatFault =
  | { kind: 'status500' }
  | { kind: 'rate429'; retryAfter: string }
  /** Headers never come: the client's first-byte timeout must fire. */
  | { kind: 'hang' }
  /** The socket is destroyed before any answer. */
  | { kind: 'reset' }
  /** A stream that sends the role and `pieces` content chunks, then the socket is destroyed. */
  | { kind: 'reset-mid-stream'; pieces: number }
  /** HTTP 200 with a JSON body cut off (or, streaming, a data line that is not JSON after the role chunk). */
  | { kind: 'malformed' }
  /** A stream that sends the role and one content chunk, then an error event. */
  | { kind: 'stream-error' }
  /** No usage at all in the answer (a server ignoring include_usage). */
  | { kind: 'no-usage' }
  /**
   * Streamed tool calls the way some compatible servers send them: indices 10, 20, … instead of 0, 1, …, the id in a
   * piece of its own before the name, and the arguments in one piece.
   */
  | { kind: 'odd-tool-stream' }
  /** One choice fewer than the `n` asked for (at least one), streamed or not; usage counts what was answered. */
  | { kind: 'fewer-choices' };

export interface ChatSimulator {
  url: string;
  requests: RecordedRequest[];
  /** Cached prompt tokens to report (capped at the prompt tokens). */
  cachedTokens: number;
  /** Tokens per streamed content chunk. */
  pieceTokens: number;
  /** Pause before each streamed content chunk (a model producing tokens over time). */
  pieceDelayMs: number;
  /** Streams that ran to their end (usage sent), whether or not the client was still there. */
  completedStreams: number;
  /** Every usage object sent, in order. */
  sentUsages: Array<Record<string, any>>;
  /**
   * A reasoning model: every answer starts with a trace (simReasoning), sent under this name (vLLM and DeepSeek:
   * `reasoning_content`; vLLM 0.10+ and OpenRouter: `reasoning`; OpenRouter's segments: `reasoning_details`).
   */
  reasoning: 'reasoning_content' | 'reasoning' | 'reasoning_details' | undefined;
  /** Whether usage has completion_tokens_details.reasoning_tokens (OpenAI does; vLLM sends completion_tokens_details: null). */
  reportReasoningTokens: boolean;
  /** Active until cleared; `times` limits how many requests it affects. */
  setFault(fault: ChatFault | undefined, times?: number): void;
  reset(): void;
  close(): Promise<void>;
}

/** One planned choice of an answer. */
interface SimChoice {
  reasoning: string;
  content: string;
  refusal: string;
  toolCalls: ReturnType<typeof simToolCalls>;
  finish: string;
}

/** What the simulator's reasoning model thinks before answering (the effort asked for shows in it). */
export const simReasoning = (userText: string, effort?: unknown) =>
  `Thinking${typeof effort === 'string' ? ` (${effort})` : ''} about: ${userText}`;
/** The refusal the simulator answers to a user message starting with "refuse:". */
export const SIM_REFUSAL = "I'm sorry, I can't help with that.";

/**
 * The simulator's logprobs for a text: one "token" per 4 characters (its token rule), logprob -(i mod 4) / 4 - 0.01,
 * with `top` alternatives: the token itself first, then "<token>~1", "<token>~2"... each 1 lower.
 */
export function simTokenLogprobs(text: string, top: number, offset = 0) {
  const characters = [...text];
  const out = [];
  for (let start = 0; start < characters.length; start += 4) {
    const token = characters.slice(start, start + 4).join('');
    const logprob = -(((offset + start / 4) % 4) / 4) - 0.01;
    const bytes = [...Buffer.from(token, 'utf8')];
    const alternatives = Array.from({ length: top }, (_, k) => {
      const alt = k === 0 ? token : `${token}~${k}`;
      return { token: alt, logprob: logprob - k, bytes: [...Buffer.from(alt, 'utf8')] };
    });
    out.push({ token, logprob, bytes, top_logprobs: alternatives });
  }
  return out;
}

function simLogprobs(choice: SimChoice, top: number) {
  if (choice.toolCalls) return { content: null, refusal: null };
  if (choice.refusal) return { content: null, refusal: simTokenLogprobs(choice.refusal, top) };
  return { content: simTokenLogprobs(choice.content, top), refusal: null };
}

export const SIM_MESSAGE_TOKENS = 3;
export const SIM_REPLY_TOKENS = 3;
export const simTokens = (text: string) => Math.ceil([...text].length / 4);
/** The simulator's prompt token count for these message contents. */
export const simPromptTokens = (...contents: string[]) =>
  SIM_REPLY_TOKENS + contents.reduce((sum, content) => sum + SIM_MESSAGE_TOKENS + simTokens(content), 0);

/** The simulator's completion tokens for tool calls: each call's name and arguments, as text. */
export const simToolCallTokens = (calls: Array<{ function: { name: string; arguments: string } }>) =>
  calls.reduce((sum, call) => sum + simTokens(call.function.name) + simTokens(call.function.arguments), 0);

/** The tool calls the simulator answers to a "call:" request (see above). */
export function simToolCalls(
  body: Record<string, any>,
): Array<{ id: string; type: 'function'; function: { name: string; arguments: string } }> | undefined {
  const tools: any[] = Array.isArray(body.tools) ? body.tools : [];
  if (tools.length === 0 || body.tool_choice === 'none') return undefined;
  const last = body.messages[body.messages.length - 1];
  const text = last?.role === 'user' ? textOf(last.content) : '';
  if (!text.startsWith('call:')) return undefined;
  let names: string[] = tools.map((tool) => tool.function.name);
  if (body.tool_choice && typeof body.tool_choice === 'object') names = [body.tool_choice.function.name];
  else if (body.parallel_tool_calls === false) names = names.slice(0, 1);
  const query = text.slice('call:'.length).trim();
  return names.map((name, index) => ({
    id: `call_sim_${index}`,
    type: 'function' as const,
    function: { name, arguments: JSON.stringify({ query, n: index }) },
  }));
}

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool'];
/** The fields OpenAI's chat completions take; anything else is a 400. */
const KNOWN_FIELDS = new Set([
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
  'logprobs',
  'top_logprobs',
  'response_format',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'functions',
  'function_call',
  'user',
  'metadata',
  'store',
  'service_tier',
  'reasoning_effort',
  'prediction',
  'modalities',
  'audio',
  'web_search_options',
  'verbosity',
  'safety_identifier',
  'prompt_cache_key',
]);

export async function startChatSimulator(options: { apiKey?: string } = {}): Promise<ChatSimulator> {
  let fault: ChatFault | undefined;
  let faultUses = Infinity;
  const takeFault = () => {
    if (!fault || faultUses <= 0) return undefined;
    faultUses--;
    return fault;
  };
  const defaults = { cachedTokens: 0, pieceTokens: 1, pieceDelayMs: 0, reasoning: undefined, reportReasoningTokens: true };
  const server = await startRecordingServer(async (request, response) => {
    if (request.method !== 'POST' || request.pathname !== '/v1/chat/completions') {
      return apiError(response, 404, { message: `Invalid URL (${request.method} ${request.pathname})`, type: 'invalid_request_error' });
    }
    if (options.apiKey !== undefined && request.headers.authorization !== `Bearer ${options.apiKey}`) {
      return apiError(response, 401, {
        message: 'Incorrect API key provided: sk-wr***ey. You can find your API key at https://platform.openai.com/account/api-keys.',
        type: 'invalid_request_error',
        code: 'invalid_api_key',
      });
    }
    const active = takeFault();
    switch (active?.kind) {
      case 'status500':
        return apiError(response, 500, {
          message: 'The server had an error while processing your request. Sorry about that!',
          type: 'server_error',
        });
      case 'rate429':
        return apiError(
          response,
          429,
          { message: 'Rate limit reached for requests per min. Please try again in 1s.', type: 'requests', code: 'rate_limit_exceeded' },
          { 'retry-after': active.retryAfter },
        );
      case 'hang':
        return;
      case 'reset':
        response.socket?.destroy();
        return;
    }
    const body = request.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return apiError(response, 400, { message: 'We could not parse the JSON body of your request.', type: 'invalid_request_error' });
    }
    const problem = check(body);
    if (problem)
      return apiError(response, 400, {
        message: problem.message,
        type: 'invalid_request_error',
        param: problem.param,
        code: problem.code ?? 'invalid_value',
      });

    const messages = body.messages as Array<{ role: string; content: unknown; tool_calls?: unknown[] }>;
    const contents = messages.map((message) => textOf(message.content) + (message.tool_calls ? JSON.stringify(message.tool_calls) : ''));
    const lastUser = [...messages].reverse().find((message) => message.role === 'user');
    const lastMessage = messages[messages.length - 1];
    const userText = lastUser ? textOf(lastUser.content) : '';
    const stops: string[] = body.stop === undefined || body.stop === null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
    const limit = (body.max_completion_tokens ?? body.max_tokens) as number | undefined;
    const toolCalls = simToolCalls(body);
    const asked = typeof body.n === 'number' ? body.n : 1;
    const choiceCount = active?.kind === 'fewer-choices' ? Math.max(1, asked - 1) : asked;
    const choices = Array.from({ length: choiceCount }, (_, index): SimChoice => {
      // The reasoning trace comes first and shares the budget with the answer (as on vLLM and OpenAI).
      let reasoning = simulator.reasoning ? simReasoning(userText, body.reasoning_effort) : '';
      let budget = limit;
      let finish = 'stop';
      if (budget !== undefined && simTokens(reasoning) >= budget) {
        reasoning = [...reasoning].slice(0, budget * 4).join('');
        return { reasoning, content: '', refusal: '', toolCalls: undefined, finish: 'length' };
      }
      if (budget !== undefined) budget -= simTokens(reasoning);
      if (userText.startsWith('refuse:') && lastMessage.role === 'user') {
        return { reasoning, content: '', refusal: SIM_REFUSAL, toolCalls: undefined, finish };
      }
      if (toolCalls) {
        // Each choice's calls have their own ids (choice 0's as documented above), as OpenAI's do.
        const own = index === 0 ? toolCalls : toolCalls.map((call) => ({ ...call, id: `${call.id}_c${index}` }));
        return { reasoning, content: '', refusal: '', toolCalls: own, finish: 'tool_calls' };
      }
      const label = index === 0 ? 'Reply' : `Reply ${index + 1}`;
      let answer = lastMessage.role === 'tool' ? `Tool said: ${textOf(lastMessage.content)}` : `${label}: ${userText}`;
      let cut = -1;
      for (const stop of stops) {
        const at = answer.indexOf(stop);
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      if (cut >= 0) answer = answer.slice(0, cut);
      if (budget !== undefined && simTokens(answer) > budget) {
        answer = [...answer].slice(0, budget * 4).join('');
        finish = 'length';
      }
      return { reasoning, content: answer, refusal: '', toolCalls: undefined, finish };
    });
    const promptTokens = simPromptTokens(...contents) + (Array.isArray(body.tools) ? simTokens(JSON.stringify(body.tools)) : 0);
    const reasoningTokens = choices.reduce((sum, choice) => sum + simTokens(choice.reasoning), 0);
    const completionTokens = choices.reduce(
      (sum, choice) =>
        sum +
        simTokens(choice.reasoning) +
        (choice.toolCalls ? simToolCallTokens(choice.toolCalls) : simTokens(choice.content) + simTokens(choice.refusal)),
      0,
    );
    const usage: Record<string, unknown> = {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
      prompt_tokens_details: { cached_tokens: Math.min(simulator.cachedTokens, promptTokens), audio_tokens: 0 },
      completion_tokens_details: {
        reasoning_tokens: reasoningTokens,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    };
    // vLLM reports no completion_tokens_details (its reasoning tokens are inside completion_tokens).
    if (simulator.reasoning && !simulator.reportReasoningTokens) usage.completion_tokens_details = null;
    const id = `chatcmpl-sim${server.requests.length}`;
    const created = Math.floor(Date.now() / 1000);
    const model = body.model as string;
    const reportUsage = active?.kind !== 'no-usage';
    const withLogprobs = body.logprobs === true;
    const topLogprobs = typeof body.top_logprobs === 'number' ? body.top_logprobs : 0;
    const spelling = simulator.reasoning;
    const reasoningFields = (text: string): Record<string, unknown> => {
      if (!spelling || text === '') return {};
      if (spelling === 'reasoning_details') return { reasoning_details: [{ type: 'reasoning.text', text, format: 'unknown', index: 0 }] };
      return { [spelling]: text };
    };

    if (body.stream !== true) {
      if (active?.kind === 'malformed') {
        response.writeHead(200, { 'content-type': 'application/json' });
        return void response.end('{"id": "chatcmpl-x", "choices": [{"message": {"content": "Rep');
      }
      const completion: Record<string, unknown> = {
        id,
        object: 'chat.completion',
        created,
        model,
        system_fingerprint: 'fp_sim',
        choices: choices.map((choice, index) => ({
          index,
          message: {
            role: 'assistant',
            content: choice.toolCalls || choice.refusal ? null : choice.content,
            refusal: choice.refusal || null,
            annotations: [],
            ...reasoningFields(choice.reasoning),
            ...(choice.toolCalls ? { tool_calls: choice.toolCalls } : {}),
          },
          logprobs: withLogprobs ? simLogprobs(choice, topLogprobs) : null,
          finish_reason: choice.finish,
        })),
        service_tier: 'default',
      };
      if (reportUsage) {
        completion.usage = usage;
        simulator.sentUsages.push(usage);
      }
      return sendJson(response, 200, completion);
    }

    response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const includeUsage = body.stream_options?.include_usage === true && reportUsage;
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_sim', choices, ...(includeUsage ? { usage: null } : {}), ...extra })}\n\n`;
    const choice = (index: number, delta: Record<string, unknown>, finishReason: string | null, logprobs: unknown = null) => ({
      index,
      delta,
      logprobs,
      finish_reason: finishReason,
    });
    for (let index = 0; index < choices.length; index++)
      response.write(chunk([choice(index, { role: 'assistant', content: '', refusal: null }, null)]));
    if (active?.kind === 'malformed') {
      response.write('data: {"id": "chatcmpl-x", "choices": [{"delta": {"content": "Rep\n\n');
      return void setTimeout(() => response.end(), 20);
    }
    const size = simulator.pieceTokens * 4;
    const split = (text: string) => {
      const characters = [...text];
      const pieces: string[] = [];
      for (let start = 0; start < characters.length; start += size) pieces.push(characters.slice(start, start + size).join(''));
      return pieces;
    };
    // Each choice's chunks in order; the choices interleaved (one chunk of each in turn), as OpenAI streams n > 1.
    // A content step carries its piece index (the faults below count content pieces of a choice).
    type Step = { data: string; contentPiece?: number };
    const steps = choices.map((planned, choiceIndex): Step[] => {
      const out: Step[] = [];
      for (const piece of split(planned.reasoning)) out.push({ data: chunk([choice(choiceIndex, reasoningFields(piece), null)]) });
      const field = planned.refusal ? 'refusal' : 'content';
      for (const [index, piece] of split(planned.refusal || planned.content).entries()) {
        const logprobs = withLogprobs
          ? { content: null, refusal: null, [field]: simTokenLogprobs(piece, topLogprobs, index * simulator.pieceTokens) }
          : null;
        out.push({ data: chunk([choice(choiceIndex, { [field]: piece }, null, logprobs)]), contentPiece: index });
      }
      for (const [index, call] of (planned.toolCalls ?? []).entries()) {
        if (active?.kind === 'odd-tool-stream') {
          const odd = (index + 1) * 10;
          out.push({ data: chunk([choice(choiceIndex, { tool_calls: [{ index: odd, id: call.id, type: 'function' }] }, null)]) });
          out.push({ data: chunk([choice(choiceIndex, { tool_calls: [{ index: odd, function: { name: call.function.name } }] }, null)]) });
          out.push({
            data: chunk([choice(choiceIndex, { tool_calls: [{ index: odd, function: { arguments: call.function.arguments } }] }, null)]),
          });
          continue;
        }
        out.push({
          data: chunk([
            choice(
              choiceIndex,
              { tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] },
              null,
            ),
          ]),
        });
        for (const piece of split(call.function.arguments)) {
          out.push({ data: chunk([choice(choiceIndex, { tool_calls: [{ index, function: { arguments: piece } }] }, null)]) });
        }
      }
      out.push({ data: chunk([choice(choiceIndex, {}, planned.finish)]) });
      return out;
    });
    for (let round = 0; round < Math.max(...steps.map((list) => list.length)); round++) {
      for (const list of steps) {
        const step = list[round];
        if (!step) continue;
        if (step.contentPiece !== undefined) {
          if (active?.kind === 'reset-mid-stream' && step.contentPiece === active.pieces) {
            // Let the pieces already written reach the client before the connection dies.
            await new Promise((resolve) => setTimeout(resolve, 50));
            response.socket?.destroy();
            return;
          }
          if (active?.kind === 'stream-error' && step.contentPiece === 1) {
            response.write(
              `data: ${JSON.stringify({ error: { message: 'The server had an error while processing your request. Contact us at https://help.openai.com with sk-abcdefghijklmnop.', type: 'server_error', param: null, code: null } })}\n\n`,
            );
            return void response.end();
          }
          if (simulator.pieceDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, simulator.pieceDelayMs));
          if (response.destroyed) return; // the client (Deepshi) hung up: the generation stops, as OpenAI's does
        }
        response.write(step.data);
      }
    }
    if (includeUsage) {
      response.write(chunk([], { usage }));
      simulator.sentUsages.push(usage);
    }
    simulator.completedStreams++;
    response.end('data: [DONE]\n\n');
  });

  const simulator: ChatSimulator = {
    url: server.url,
    requests: server.requests,
    ...defaults,
    sentUsages: [],
    completedStreams: 0,
    setFault(next, times = Infinity) {
      fault = next;
      faultUses = times;
    },
    reset() {
      server.requests.length = 0;
      simulator.sentUsages.length = 0;
      simulator.completedStreams = 0;
      fault = undefined;
      Object.assign(simulator, defaults);
    },
    close: () => server.close(),
  };
  return simulator;
}

function apiError(
  response: ServerResponse,
  status: number,
  error: { message: string; type: string; param?: string | null; code?: string | null },
  headers: Record<string, string> = {},
): void {
  sendJson(response, status, { error: { param: null, code: null, ...error } }, headers);
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((part) => (part && typeof part.text === 'string' ? part.text : '')).join('');
  return '';
}

function check(body: Record<string, any>): { param: string; message: string; code?: string } | undefined {
  for (const key of Object.keys(body)) {
    if (!KNOWN_FIELDS.has(key)) return { param: key, message: `Unrecognized request argument supplied: ${key}`, code: 'unknown_parameter' };
  }
  if (typeof body.model !== 'string' || body.model === '')
    return { param: 'model', message: 'you must provide a model parameter', code: 'missing_required_parameter' };
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    return { param: 'messages', message: "Invalid 'messages': empty array. Expected an array with minimum length 1." };
  for (const [index, message] of body.messages.entries()) {
    if (!message || !ROLES.includes(message.role))
      return { param: `messages[${index}].role`, message: `Invalid value for 'messages[${index}].role'.` };
    if (message.content === null && !(message.role === 'assistant' && Array.isArray(message.tool_calls))) {
      return {
        param: `messages[${index}].content`,
        message: `Invalid value for 'messages[${index}].content': expected a string, got null.`,
      };
    }
    if (message.role === 'tool' && typeof message.tool_call_id !== 'string')
      return { param: `messages[${index}].tool_call_id`, message: 'tool_call_id is required.' };
    if (message.role === 'assistant' && Array.isArray(message.tool_calls)) {
      const answered = new Set<string>();
      for (let next = index + 1; next < body.messages.length && body.messages[next]?.role === 'tool'; next++)
        answered.add(body.messages[next].tool_call_id);
      const missing = message.tool_calls.find((call: any) => !answered.has(call?.id));
      if (missing) {
        return {
          param: 'messages',
          message: `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${missing?.id}`,
        };
      }
    }
    if (message.role === 'tool') {
      let previous = index - 1;
      while (previous >= 0 && body.messages[previous]?.role === 'tool') previous--;
      const calls = previous >= 0 ? body.messages[previous]?.tool_calls : undefined;
      if (!Array.isArray(calls) || !calls.some((call: any) => call?.id === message.tool_call_id)) {
        return {
          param: `messages[${index}].role`,
          message: "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
        };
      }
    }
  }
  if (body.tools !== undefined && body.tools !== null) {
    if (
      !Array.isArray(body.tools) ||
      body.tools.some((tool: any) => tool?.type !== 'function' || typeof tool.function?.name !== 'string')
    ) {
      return { param: 'tools', message: "Invalid 'tools': expected an array of function tools." };
    }
  }
  if (body.tool_choice !== undefined && body.tool_choice !== null) {
    const choice = body.tool_choice;
    const named =
      typeof choice === 'object' &&
      choice.type === 'function' &&
      Array.isArray(body.tools) &&
      body.tools.some((tool: any) => tool.function.name === choice.function?.name);
    if (!(['none', 'auto', 'required'].includes(choice) || named)) return { param: 'tool_choice', message: "Invalid 'tool_choice'." };
    if (!Array.isArray(body.tools))
      return {
        param: 'tool_choice',
        message: "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
      };
  }
  const range = (name: string, min: number, max: number) => {
    const value = body[name];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'number' || value < min || value > max)
      return { param: name, message: `Invalid '${name}': expected a number between ${min} and ${max}.` };
    return undefined;
  };
  const bad = range('temperature', 0, 2) ?? range('top_p', 0, 1) ?? range('frequency_penalty', -2, 2) ?? range('presence_penalty', -2, 2);
  if (bad) return bad;
  for (const name of ['max_tokens', 'max_completion_tokens']) {
    const value = body[name];
    if (value !== undefined && value !== null && (!Number.isInteger(value) || value < 1))
      return { param: name, message: `Invalid '${name}': integer below minimum value.` };
  }
  if (body.stop !== undefined && body.stop !== null) {
    const list = typeof body.stop === 'string' ? [body.stop] : body.stop;
    if (!Array.isArray(list) || list.length > 4 || list.some((item: unknown) => typeof item !== 'string'))
      return { param: 'stop', message: "Invalid 'stop'." };
  }
  if (body.n !== undefined && body.n !== null && (!Number.isInteger(body.n) || body.n < 1 || body.n > 128))
    return { param: 'n', message: "Invalid 'n': expected an integer between 1 and 128." };
  if (body.logprobs !== undefined && body.logprobs !== null && typeof body.logprobs !== 'boolean')
    return { param: 'logprobs', message: "Invalid 'logprobs': expected a boolean." };
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && body.logprobs !== true) {
    return { param: 'top_logprobs', message: "Invalid 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used." };
  }
  if (body.reasoning_effort !== undefined && !['none', 'minimal', 'low', 'medium', 'high', 'xhigh'].includes(body.reasoning_effort)) {
    return { param: 'reasoning_effort', message: "Invalid 'reasoning_effort'." };
  }
  if (body.stream !== undefined && typeof body.stream !== 'boolean')
    return { param: 'stream', message: "Invalid 'stream': expected a boolean." };
  if (body.stream_options !== undefined && body.stream_options !== null && body.stream !== true) {
    return { param: 'stream_options', message: "The 'stream_options' parameter is only allowed when 'stream' is enabled." };
  }
  return undefined;
}
