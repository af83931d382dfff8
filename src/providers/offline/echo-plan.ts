import { createHash } from 'node:crypto';
import { ProviderError, type ChatMessage, type ChatToolCall, type NormalizedChatRequest } from '../types.ts';
import { JsonInstanceBuilder, SeededRandom, wordsOf } from './echo-json.ts';

/**
 * What deepshi-echo answers, before it is cut to max_tokens and stop (echo-adapter.ts). A stand-in's rules, written
 * down so an agent loop can be tested with no network (docs/chat.md):
 *
 * 1. The conversation ends with `tool` messages: a text answer that uses them, "Echo: <tool> returned <result>" (one
 *    clause per result, "; " between), whatever tool_choice says; in JSON when a response_format asks for JSON.
 * 2. Tools are offered and tool_choice is not "none", and tool_choice names a function, or is "required", or the last
 *    user message names one or more tools (as words): tool calls, finish `tool_calls`. Named: that tool. Otherwise
 *    the tools the message names, in the order it names them (only the first with parallel_tool_calls false), or
 *    for "required" with none named, the first tool. Arguments validate against the tool's `parameters` schema
 *    (echo-json.ts), strings taken from the words after the tool's name in the message.
 * 3. response_format json_object: {"echo": "<last user message>"}; json_schema: a value valid against the schema.
 * 4. Otherwise "Echo: " and the last user message (or, with none, the last message).
 *
 * Deterministic: everything chosen comes from a generator seeded by the messages, the tools, the response format and
 * `seed`, and for choice i > 0 of several (`n`) also by i, so choices differ and each is the same on every call: a text
 * answer of choice i > 0 starts "Echo <i+1>: " instead of "Echo: ", a json_object answer adds `"choice": i+1`, tool
 * call ids and generated values differ. Choice 0 is the answer of a one-choice request.
 */

export type EchoPlan = { kind: 'text'; content: string } | { kind: 'tools'; calls: ChatToolCall[] };

interface FunctionTool {
  name: string;
  parameters: unknown;
}

export function planEcho(request: Pick<NormalizedChatRequest, 'messages' | 'extra' | 'sampling'>, choice = 0): EchoPlan {
  const { messages, extra } = request;
  const seedParts = [messages, extra.tools, extra.tool_choice, extra.response_format, request.sampling.seed ?? null];
  // Choice 0 is seeded exactly as a one-choice request; the others also by their index.
  const random = new SeededRandom(...seedParts, ...(choice > 0 ? [choice] : []));
  const label = choice > 0 ? `Echo ${choice + 1}: ` : 'Echo: ';
  const lastUser = [...messages].reverse().find((message) => message.role === 'user');
  const source = lastUser ?? messages[messages.length - 1];
  const responseFormat = isRecord(extra.response_format) ? extra.response_format : undefined;

  const results = trailingToolResults(messages);
  if (results.length > 0) {
    const content = results.map((result) => `${result.name} returned ${result.content}`).join('; ');
    return answer(`${label}${content}`, responseFormat, random, content, choice);
  }

  const tools = functionTools(extra.tools);
  const calls = tools.length > 0 && source?.role === 'user' ? chooseToolCalls(tools, extra, source.content) : [];
  if (calls.length > 0) {
    const id = createHash('sha256')
      .update(JSON.stringify([messages, extra.tools, request.sampling.seed ?? null, ...(choice > 0 ? [choice] : [])]))
      .digest('hex')
      .slice(0, 24);
    return {
      kind: 'tools',
      calls: calls.map((call, index) => ({
        id: `call_${id}${index}`,
        type: 'function',
        function: {
          name: call.tool.name,
          arguments: JSON.stringify(
            new JsonInstanceBuilder(call.tool.parameters ?? { type: 'object', properties: {} }, random, call.words).build(),
          ),
        },
      })),
    };
  }
  return answer(`${label}${source?.content ?? ''}`, responseFormat, random, source?.content ?? '', choice);
}

function answer(
  text: string,
  responseFormat: Record<string, unknown> | undefined,
  random: SeededRandom,
  material: string,
  choice: number,
): EchoPlan {
  const echo = choice > 0 ? { echo: material, choice: choice + 1 } : { echo: material };
  if (responseFormat?.type === 'json_object') return { kind: 'text', content: JSON.stringify(echo) };
  if (responseFormat?.type === 'json_schema') {
    const spec = isRecord(responseFormat.json_schema) ? responseFormat.json_schema : {};
    if (spec.schema === undefined) return { kind: 'text', content: JSON.stringify(echo) };
    return { kind: 'text', content: JSON.stringify(new JsonInstanceBuilder(spec.schema, random, wordsOf(material)).build()) };
  }
  return { kind: 'text', content: text };
}

/** The `tool` messages ending the conversation, each with the name of the call it answers. */
function trailingToolResults(messages: ChatMessage[]): Array<{ name: string; content: string }> {
  let start = messages.length;
  while (start > 0 && messages[start - 1].role === 'tool') start--;
  if (start === messages.length) return [];
  const calls = (start > 0 ? messages[start - 1].toolCalls : undefined) ?? [];
  return messages.slice(start).map((message) => {
    const call = calls.find((item) => isRecord(item) && item.id === message.toolCallId) as { function?: { name?: unknown } } | undefined;
    const name = typeof call?.function?.name === 'string' ? call.function.name : 'the tool';
    return { name, content: message.content };
  });
}

function functionTools(raw: unknown): FunctionTool[] {
  if (!Array.isArray(raw)) return [];
  const tools: FunctionTool[] = [];
  for (const tool of raw) {
    if (isRecord(tool) && tool.type === 'function' && isRecord(tool.function) && typeof tool.function.name === 'string') {
      tools.push({ name: tool.function.name, parameters: tool.function.parameters });
    }
  }
  return tools;
}

function chooseToolCalls(
  tools: FunctionTool[],
  extra: Record<string, unknown>,
  text: string,
): Array<{ tool: FunctionTool; words: string[] }> {
  const choice = extra.tool_choice;
  if (choice === 'none') return [];
  const mentions = tools
    .map((tool) => ({ tool, at: mentionAt(text, tool.name) }))
    .filter((mention) => mention.at >= 0)
    .sort((a, b) => a.at - b.at);
  const wordsAfter = (tool: FunctionTool) => {
    const at = mentionAt(text, tool.name);
    const after = at >= 0 ? wordsOf(text.slice(at + tool.name.length)) : [];
    return after.length > 0 ? after : wordsOf(text);
  };
  if (isRecord(choice)) {
    const name = isRecord(choice.function) ? choice.function.name : undefined;
    const tool = tools.find((item) => item.name === name);
    if (!tool)
      throw new ProviderError(
        'invalid_request',
        `tool_choice names a function that is not in 'tools': ${JSON.stringify(name)?.slice(0, 80)}.`,
        { param: 'tool_choice' },
      );
    return [{ tool, words: wordsAfter(tool) }];
  }
  const picked = mentions.length > 0 ? mentions.map((mention) => mention.tool) : choice === 'required' ? [tools[0]] : [];
  const allowed = extra.parallel_tool_calls === false ? picked.slice(0, 1) : picked;
  return allowed.map((tool) => ({ tool, words: wordsAfter(tool) }));
}

/** Where the text names the tool as a word (case-insensitive), or -1. */
function mentionAt(text: string, name: string): number {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = new RegExp(`(^|[^\\p{L}\\p{N}_])(${escaped})(?=$|[^\\p{L}\\p{N}_])`, 'iu').exec(text);
  return match ? match.index + match[1].length : -1;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
