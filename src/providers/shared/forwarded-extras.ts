import type { Warning } from '../../domain/warnings.ts';

/**
 * Which of the caller's unknown request fields (`request.extra`) an adapter may forward to its upstream.
 * Dropped, each with a warning:
 * - fields the adapter owns: it writes them itself after the extras, so they could not take effect anyway
 *   (model, prompt, image count, input images, delivery mode...), and the caller should know;
 * - webhook-like fields and any field carrying a URL anywhere in its value: an upstream told to call or fetch a
 *   caller-chosen address is an SSRF and exfiltration channel on the operator's account, and a webhook would
 *   deliver results around the gateway (and its billing).
 */
export function forwardableExtras(
  extra: Record<string, unknown>,
  options: { owned: readonly string[]; provider: string },
): { fields: Record<string, unknown>; warnings: Warning[] } {
  const fields: Record<string, unknown> = {};
  const warnings: Warning[] = [];
  for (const [name, value] of Object.entries(extra)) {
    if (options.owned.includes(name)) {
      warnings.push({
        type: 'other',
        param: name,
        message: `'${name}' is set by Deepshi for ${options.provider}; the value you sent was ignored.`,
      });
    } else if (/webhook|callback/i.test(name) || containsUrl(value, 0)) {
      warnings.push({
        type: 'unsupported',
        param: name,
        message: `'${name}' carries a URL or webhook; Deepshi does not forward those to ${options.provider}.`,
      });
    } else {
      fields[name] = value;
    }
  }
  return { fields, warnings };
}

const URL_LIKE = /^\s*(?:[a-z][a-z0-9+.-]*:)?\/\//i;

function containsUrl(value: unknown, depth: number): boolean {
  if (typeof value === 'string') return URL_LIKE.test(value);
  // Anything nested deeper than this is not a plausible upstream option; refuse rather than walk it.
  if (depth > 4) return value !== null && typeof value === 'object';
  if (Array.isArray(value)) return value.some((item) => containsUrl(item, depth + 1));
  if (value !== null && typeof value === 'object') return Object.values(value).some((item) => containsUrl(item, depth + 1));
  return false;
}
