/** Who is calling: the authenticated key. */
export interface Caller {
  keyId: string;
  accountId: string;
  /** null = every model; otherwise the allowlist (empty = nothing). */
  models: string[] | null;
  /** The key's own rate limits (null fields = server defaults); absent = server defaults. */
  limits?: ApiKeyLimits;
}

/** A key's own limits. 0 = unlimited; null = use the server default (DEEPSHI_DEFAULT_*). */
export interface ApiKeyLimits {
  requestsPerMinute: number | null;
  imagesPerMinute: number | null;
  maxInFlight: number | null;
  /** Prompt and completion tokens per minute on text models (admitted at the request's upper bound, settled at its usage). */
  tokensPerMinute?: number | null;
  /** Async image jobs the key may have queued or running at once (DEEPSHI_DEFAULT_MAX_QUEUED_JOBS when null). */
  maxQueuedJobs?: number | null;
}

export function isAllowed(caller: Caller, modelId: string): boolean {
  return caller.models === null || caller.models.includes(modelId);
}
