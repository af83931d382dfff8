/** What the upstream reports about usage; every field optional and untrusted until clamped by billing. */
export interface UpstreamUsage {
  inputTokens?: number;
  cachedInputTokens?: number;
  inputImageTokens?: number;
  outputTokens?: number;
  outputImageTokens?: number;
  reasoningTokens?: number;
  /** Cost the upstream itself reported, in nanos (BFL credits, xAI ticks...). */
  costNanos?: bigint;
  /** Images the upstream says it billed. */
  billedImages?: number;
}
