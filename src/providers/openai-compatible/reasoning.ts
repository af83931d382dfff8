import type { Warning } from '../../domain/warnings.ts';
import type { ChatReasoningRequest, ReasoningDetail } from '../types.ts';

/**
 * Reasoning on OpenAI-compatible servers, both ways.
 *
 * Answers: servers spell the trace differently. vLLM (before 0.10) and DeepSeek send `reasoning_content`, vLLM 0.10+,
 * OpenRouter and others `reasoning`, OpenRouter also `reasoning_details` (typed segments). Deepshi answers one shape
 * whatever came: `reasoning` (the text) and `reasoning_details` (the segments: the upstream's own, or one
 * `reasoning.text` segment holding the text), streamed as `delta.reasoning` (and `delta.reasoning_details` when the
 * upstream streams segments). When a server sends several spellings of the same text, `reasoning` wins, then
 * `reasoning_content`, then the text of the segments, so nothing is doubled.
 *
 * Requests: the caller's `reasoning_effort` / `reasoning` (one ChatReasoningRequest) go out in the field the route
 * takes (`options.reasoning_field`): `reasoning_effort` (OpenAI, vLLM; the default) carries the effort only, the other
 * settings being reported as ignored, except `exclude`, which Deepshi honours itself by leaving the trace out of the
 * answer; `reasoning` (OpenRouter) carries them all.
 */

export type ReasoningField = 'reasoning_effort' | 'reasoning';

export interface ReadReasoning {
  text: string;
  details: ReasoningDetail[] | undefined;
}

/** The trace of a completion's `message` or a chunk's `delta` (any spelling); empty text and no details when none. */
export function readReasoning(
  carrier: { reasoning?: unknown; reasoning_content?: unknown; reasoning_details?: unknown } | null | undefined,
): ReadReasoning {
  if (!carrier) return { text: '', details: undefined };
  const details = readDetails(carrier.reasoning_details);
  let text = '';
  if (typeof carrier.reasoning === 'string' && carrier.reasoning !== '') text = carrier.reasoning;
  else if (typeof carrier.reasoning_content === 'string' && carrier.reasoning_content !== '') text = carrier.reasoning_content;
  else if (details) text = details.map(detailText).join('');
  return { text, details };
}

/** The segments of the answer: the upstream's, or one text segment made from the text (none when there is no trace). */
export function answerDetails(text: string, details: ReasoningDetail[] | undefined): ReasoningDetail[] | undefined {
  if (details && details.length > 0) return details;
  if (text === '') return undefined;
  return [{ type: 'reasoning.text', text, format: 'unknown', index: 0 }];
}

function readDetails(raw: unknown): ReasoningDetail[] | undefined {
  if (!Array.isArray(raw)) return undefined;
  const details = raw.filter(
    (item): item is ReasoningDetail => item !== null && typeof item === 'object' && !Array.isArray(item) && typeof item.type === 'string',
  );
  return details.length > 0 ? details : undefined;
}

function detailText(detail: ReasoningDetail): string {
  if (detail.type === 'reasoning.text' && typeof detail.text === 'string') return detail.text;
  if (detail.type === 'reasoning.summary' && typeof detail.summary === 'string') return detail.summary;
  return '';
}

/** Collects a streamed trace and passes each piece on (unless the caller excluded it). */
export class ReasoningAccumulator {
  private text = '';
  private readonly details: ReasoningDetail[] = [];

  constructor(private readonly onPiece: ((text: string, details?: ReasoningDetail[]) => void) | undefined) {}

  push(delta: Parameters<typeof readReasoning>[0]): void {
    const piece = readReasoning(delta);
    if (piece.text === '' && !piece.details) return;
    this.text += piece.text;
    if (piece.details) this.details.push(...piece.details);
    this.onPiece?.(piece.text, piece.details);
  }

  finish(): ReadReasoning {
    return { text: this.text, details: this.details.length > 0 ? mergeStreamedDetails(this.details) : undefined };
  }
}

/**
 * Streamed segments arrive in pieces that share an `index` (OpenRouter): pieces of one text segment are joined, the
 * others kept as they came.
 */
function mergeStreamedDetails(pieces: ReasoningDetail[]): ReasoningDetail[] {
  const out: ReasoningDetail[] = [];
  for (const piece of pieces) {
    const last = out[out.length - 1];
    if (
      last &&
      last.type === 'reasoning.text' &&
      piece.type === 'reasoning.text' &&
      last.index === piece.index &&
      typeof piece.text === 'string'
    ) {
      out[out.length - 1] = { ...last, ...piece, text: `${typeof last.text === 'string' ? last.text : ''}${piece.text}` };
    } else {
      out.push({ ...piece });
    }
  }
  return out;
}

/** The request fields for the caller's reasoning settings, in the route's field; what that field cannot carry is warned about. */
export function reasoningRequestFields(
  reasoning: ChatReasoningRequest | undefined,
  field: ReasoningField,
  model: string,
): { fields: Record<string, unknown>; warnings: Warning[] } {
  if (!reasoning) return { fields: {}, warnings: [] };
  if (field === 'reasoning') {
    const wire: Record<string, unknown> = {};
    if (reasoning.effort !== undefined) wire.effort = reasoning.effort;
    if (reasoning.maxTokens !== undefined) wire.max_tokens = reasoning.maxTokens;
    if (reasoning.exclude !== undefined) wire.exclude = reasoning.exclude;
    if (reasoning.enabled !== undefined) wire.enabled = reasoning.enabled;
    return { fields: { reasoning: wire }, warnings: [] };
  }
  const warnings: Warning[] = [];
  const ignore = (param: string) =>
    warnings.push({ type: 'unsupported', param, message: `${model}'s upstream takes only a reasoning effort; '${param}' was ignored.` });
  if (reasoning.maxTokens !== undefined) ignore('reasoning.max_tokens');
  if (reasoning.enabled !== undefined) ignore('reasoning.enabled');
  return { fields: reasoning.effort !== undefined ? { reasoning_effort: reasoning.effort } : {}, warnings };
}

export function reasoningField(options: Record<string, unknown>): ReasoningField {
  return options.reasoning_field === 'reasoning' ? 'reasoning' : 'reasoning_effort';
}
