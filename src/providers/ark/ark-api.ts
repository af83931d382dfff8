import { z } from 'zod';
import { base64TextField } from '../shared/large-json.ts';

/**
 * BytePlus ModelArk image generation wire shapes (docs/providers.md, upstream wire contracts): only the fields the adapter
 * reads, all nullish.
 */

const itemSchema = z.object({
  b64_json: base64TextField.nullish(),
  url: z.string().nullish(),
  size: z.string().nullish(),
  // In sequential mode a failed item may carry an error instead of an image [R].
  error: z.object({ code: z.string().nullish(), message: z.string().nullish() }).nullish(),
});

const responseSchema = z.object({
  data: z.array(itemSchema).nullish(),
  usage: z.object({ generated_images: z.number().nullish() }).nullish(),
});
export type ArkResponse = z.infer<typeof responseSchema>;

export function parseResponse(json: unknown): ArkResponse | undefined {
  const parsed = responseSchema.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}

const errorSchema = z.object({
  error: z.object({ code: z.string().nullish(), message: z.string().nullish(), param: z.string().nullish() }),
});

export interface ArkError {
  code: string | undefined;
  message: string | undefined;
  param: string | undefined;
}

export function parseError(json: unknown): ArkError {
  const parsed = errorSchema.safeParse(json);
  if (!parsed.success) return { code: undefined, message: undefined, param: undefined };
  const { code, message, param } = parsed.data.error;
  return { code: code || undefined, message: message || undefined, param: param || undefined };
}

/** Ark request fields → Deepshi's names, for `param` in invalid-request errors. */
const PARAM_NAMES: Record<string, string> = {
  prompt: 'prompt',
  size: 'image_size',
  image: 'image',
  watermark: 'watermark',
};

/**
 * Our name for the field an InvalidParameter error is about: the error's `param` when present, else the
 * first backquoted or quoted field named in the message ("The parameter `size` specified …") [R].
 */
export function paramOf(error: ArkError, extras: Record<string, unknown>): string | undefined {
  const named = error.param ?? /(?:parameter|field)\s+[`'"]?([A-Za-z_][A-Za-z0-9_.]*)/i.exec(error.message ?? '')?.[1];
  if (!named) return undefined;
  const field = named.split('.')[0];
  return PARAM_NAMES[field] ?? (field in extras ? field : undefined);
}

/** Content refusals: InputTextSensitiveContentDetected, InputImageSensitiveContentDetected, OutputImageSensitiveContentDetected… [R] */
export function refusalOf(code: string | undefined): 'input' | 'output' | 'other' | undefined {
  if (!code || !/Sensitive|ContentPolicy|RiskDetected/i.test(code)) return undefined;
  if (code.startsWith('Input')) return 'input';
  if (code.startsWith('Output')) return 'output';
  return 'other';
}
