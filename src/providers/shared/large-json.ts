import { z } from 'zod';

/**
 * JSON.parse for upstream image responses without copying multi-megabyte base64 through the JSON parser.
 * Image payloads sit in string values under a few known keys (`b64_json` for OpenAI-style APIs, `data` for Gemini's
 * inlineData). Their positions are found with Buffer.indexOf (native memmem), each is lifted out as a Buffer view
 * of the body (no copy at all: see images/base64.ts), and the remaining small document is parsed with JSON.parse,
 * the views put back in place. So the result is what JSON.parse returns, except that such large plain-ASCII
 * string values are Buffers holding their characters; schemas read them with `base64TextField`. Anything
 * unusual (an escape inside such a value, a non-ASCII body, malformed framing) falls back to a plain JSON.parse.
 */
const LARGE_KEYS = ['"b64_json"', '"data"'].map((key) => Buffer.from(key));
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
/** Only values at least this long are lifted; small ones are not worth it. */
const MIN_LIFT = 4096;
/** The value left in the small document: JSON text `"\u0000deepshi-lifted-N"`, which parses to PLACEHOLDER + N. */
const PLACEHOLDER = '\u0000deepshi-lifted-';
const PLACEHOLDER_JSON = '\\u0000deepshi-lifted-';

export function parseUpstreamJson(body: Buffer, ascii: boolean): unknown {
  if (!ascii || body.length < MIN_LIFT * 2) return JSON.parse(body.toString(ascii ? 'latin1' : 'utf8'));
  const lifted: Buffer[] = [];
  const pieces: string[] = [];
  let cursor = 0;
  for (const spot of findLargeValues(body)) {
    pieces.push(body.toString('latin1', cursor, spot.start), `${PLACEHOLDER_JSON}${lifted.length}`);
    lifted.push(body.subarray(spot.start, spot.end));
    cursor = spot.end;
  }
  if (lifted.length === 0) return JSON.parse(body.toString('latin1'));
  pieces.push(body.toString('latin1', cursor));
  const parsed = JSON.parse(pieces.join(''));
  return restore(parsed, lifted);
}

/** Start/end (exclusive) of the contents of each large string value under a known key, in document order. */
function findLargeValues(body: Buffer): Array<{ start: number; end: number }> {
  const spots: Array<{ start: number; end: number }> = [];
  for (const key of LARGE_KEYS) {
    let from = 0;
    for (;;) {
      const at = body.indexOf(key, from);
      if (at < 0) break;
      from = at + key.length;
      // An unescaped quote can only delimit a string, so `"key"` followed by `:` and `"` is a key and its string value.
      let index = skipSpace(body, at + key.length);
      if (body[index] !== 0x3a) continue; // ':'
      index = skipSpace(body, index + 1);
      if (body[index] !== QUOTE) continue;
      const start = index + 1;
      const end = body.indexOf(QUOTE, start);
      if (end < 0) return [];
      if (end - start < MIN_LIFT) continue;
      const backslash = body.indexOf(BACKSLASH, start);
      if (backslash >= 0 && backslash < end) continue; // escaped content: leave it to JSON.parse
      spots.push({ start, end });
      from = end + 1;
    }
  }
  return spots.sort((a, b) => a.start - b.start);
}

function skipSpace(body: Buffer, index: number): number {
  while (index < body.length && (body[index] === 0x20 || body[index] === 0x0a || body[index] === 0x0d || body[index] === 0x09)) index++;
  return index;
}

function restore(value: unknown, lifted: Buffer[]): unknown {
  if (typeof value === 'string') {
    return value.startsWith(PLACEHOLDER) ? lifted[Number(value.slice(PLACEHOLDER.length))] : value;
  }
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) value[index] = restore(value[index], lifted);
    return value;
  }
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) record[key] = restore(record[key], lifted);
  }
  return value;
}

/** A string field of an upstream response that may hold a lifted image payload: a string or a Buffer view. */
export const base64TextField = z.union([z.string(), z.instanceof(Buffer)]);
