/**
 * Base64 text of an image as it travels through the gateway: a string (images we encode ourselves), or a Buffer
 * holding the ASCII characters of the text: a zero-copy view into the upstream response body it came in.
 *
 * Why views: an upstream image is 1–10 MB of base64. Turning it into a string is a copy, turning that string back
 * into bytes for our response is another, and these multi-megabyte allocations on every request are what drives
 * V8's full garbage collections (measured: a mark-compact every ~4 requests, most of the latency the gateway
 * added). With views, the bytes that arrived are the bytes written into our response.
 */
export type Base64Text = string | Buffer;

/** The ASCII bytes of the text, ready to be written into a response body (the view itself when it is one). */
export function base64Ascii(text: Base64Text): Buffer {
  return typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
}

/** The text as a string (a copy for views: only for small texts or off the hot path). */
export function base64String(text: Base64Text): string {
  return typeof text === 'string' ? text : text.toString('latin1');
}

/** Characters [start, end) as a string: prefixes for sniffing and probing without copying the whole text. */
export function base64Slice(text: Base64Text, start: number, end: number): string {
  return typeof text === 'string' ? text.slice(start, end) : text.toString('latin1', start, Math.min(end, text.length));
}

/** The decoded image bytes. */
export function decodeBase64Text(text: Base64Text): Buffer {
  return Buffer.from(base64String(text), 'base64');
}

/** Whether the text starts with `prefix` (ASCII), without copying it. */
export function base64StartsWith(text: Base64Text, prefix: string): boolean {
  return base64Slice(text, 0, prefix.length) === prefix;
}

/** Index of the first `char` (one ASCII character) at or after `from`, or -1. */
export function base64IndexOf(text: Base64Text, char: string, from = 0): number {
  return typeof text === 'string' ? text.indexOf(char, from) : text.indexOf(char.charCodeAt(0), from);
}

/** The text from `start` on: a shorter view, or a string slice. */
export function base64From(text: Base64Text, start: number): Base64Text {
  return typeof text === 'string' ? text.slice(start) : text.subarray(start);
}
