import { formatUsd, type Nanos } from '../domain/money.ts';
import { usageObject } from '../domain/usage.ts';
import { base64Ascii } from '../images/base64.ts';
import type { Warning } from '../domain/warnings.ts';
import type { ImageOutcome } from '../services/image-generation.ts';

/** The images usage object (domain/usage.ts: async jobs build the same one). */
export { usageObject };

/**
 * What the images are, as OpenAI's ImagesResponse reports it next to `size`: `output_format` (the delivered
 * encoding), and `quality` and `background` when the model takes them and their value is known (not `auto`).
 */
export interface ImageSettings {
  output_format: string;
  quality?: string;
  background?: 'transparent' | 'opaque';
}

export function imageSettings(params: Record<string, unknown>, outcome: Pick<ImageOutcome, 'images' | 'warnings'>): ImageSettings {
  const format = outcome.images[0].mediaType.replace(/^image\//, '');
  const settings: ImageSettings = { output_format: format };
  if (typeof params.quality === 'string' && params.quality !== 'auto') settings.quality = params.quality;
  const background = params.background;
  // Reported only when honoured: a background the model could not apply (reported back as a warning) is not stated.
  if ((background === 'transparent' || background === 'opaque') && !outcome.warnings.some((warning) => warning.param === 'background')) {
    settings.background = background === 'transparent' && format === 'jpeg' ? 'opaque' : background;
  }
  return settings;
}

/**
 * The ImageResponse body, assembled as byte parts: the multi-megabyte base64 texts (usually views of the upstream
 * body) are never copied, re-scanned by JSON.stringify or re-encoded as UTF-8; only the small JSON pieces around
 * them (which may hold non-ASCII text such as a revised prompt) are UTF-8 encoded. The parts go to the socket as
 * they are (sendParts), so no multi-megabyte buffer is allocated for the response at all.
 */
export function imageResponseParts(
  outcome: ImageOutcome,
  options: {
    model: string;
    created: number;
    responseFormat: 'b64_json' | 'url';
    settings?: ImageSettings;
    /** A hosted link for an image (DEEPSHI_URL_RESULTS=hosted); without one, `url` is the image's `data:` URI. */
    urlOf?: (image: ImageOutcome['images'][number]) => string | undefined;
  },
): Buffer[] {
  const first = outcome.images[0];
  const settings = options.settings ?? imageSettings({}, outcome);
  const parts: Buffer[] = [
    Buffer.from(
      `{"created":${options.created},"model":${JSON.stringify(options.model)},"size":"${first.width}x${first.height}",${JSON.stringify(settings).slice(1, -1)},"data":[`,
    ),
  ];
  outcome.images.forEach((image, position) => {
    const separator = position === 0 ? '' : ',';
    const hosted = options.responseFormat === 'url' ? options.urlOf?.(image) : undefined;
    if (hosted !== undefined) parts.push(Buffer.from(`${separator}{"url":${JSON.stringify(hosted)}`));
    else {
      const open = options.responseFormat === 'url' ? `{"url":"data:${image.mediaType};base64,` : '{"b64_json":"';
      parts.push(Buffer.from(`${separator}${open}`), base64Ascii(image.base64), Buffer.from('"'));
    }
    const revised = image.revisedPrompt !== undefined ? `,"revised_prompt":${JSON.stringify(image.revisedPrompt)}` : '';
    parts.push(Buffer.from(`${revised},"index":${image.index}}`));
  });
  parts.push(Buffer.from(`],"usage":${JSON.stringify(usageObject(outcome.usage, outcome.cost))}${warningsField(outcome.warnings)}}`));
  return parts;
}

function warningsField(warnings: Warning[]): string {
  return warnings.length > 0 ? `,"warnings":${JSON.stringify(warnings)}` : '';
}

/**
 * Headers for clients that only expose headers (the Vercel AI SDK): the exact settled cost, and which params were
 * ignored. Only for answers sent once the charge is settled (JSON): see warningHeaders for streams.
 */
export function costHeaders(cost: Nanos, warnings: Warning[]): Record<string, string> {
  return { 'x-request-cost': formatUsd(cost), ...warningHeaders(warnings) };
}

/**
 * `x-deepshi-warnings`: the ignored params, comma-separated. A stream's headers go out before anything is charged,
 * so streams carry this and never `x-request-cost` (a number that is not the charge would be worse than none); their
 * cost is in the final event's or usage chunk's `usage.cost`.
 */
export function warningHeaders(warnings: Warning[]): Record<string, string> {
  if (warnings.length === 0) return {};
  const params = [...new Set(warnings.map((warning) => warning.param).filter((param): param is string => Boolean(param)))];
  return { 'x-deepshi-warnings': params.length > 0 ? params.join(',') : 'other' };
}
