import { GatewayError, contentPolicyViolation, internalError, invalidRequest, rateLimited, upstreamFailure } from '../domain/errors.ts';
import { ProviderError } from '../providers/types.ts';

/**
 * The one mapping from what went wrong with billed upstream work to the caller's error. A call ended by our deadline
 * or by the caller leaving says so, whatever the adapter made of the abort (adapters report an aborted request as
 * 'failed' or 'unavailable'); a verdict the upstream actually gave is kept.
 */
export function toGatewayError(error: unknown, signal: AbortSignal, callerSignal: AbortSignal): GatewayError {
  if (error instanceof GatewayError) return error;
  const verdict = error instanceof ProviderError && error.kind !== 'failed' && error.kind !== 'unavailable';
  if (signal.aborted && !verdict) return abortedError(callerSignal);
  if (error instanceof ProviderError) {
    switch (error.kind) {
      case 'refused':
        return contentPolicyViolation(error.message);
      case 'invalid_request':
        return invalidRequest(error.message, error.param ?? null, 'invalid_value');
      case 'rate_limited':
        return rateLimited(
          'The upstream provider is rate limiting this model. Please retry after a short delay.',
          error.retryAfterSeconds ?? 5,
        );
      case 'unavailable':
        return upstreamFailure('The model provider is unavailable right now. Please retry.', 503);
      case 'misconfigured':
        return upstreamFailure('This model is misconfigured on the server. The operator has been notified in the logs.', 502);
      case 'failed':
        return upstreamFailure(`The generation failed: ${error.message}`, 502);
    }
  }
  return internalError(error);
}

/** Why a hold was released, for the request record: the provider's verdict, never a stack or a secret. */
export function describeFailure(error: unknown): string {
  if (error instanceof ProviderError) return `${error.kind}: ${error.message}`.slice(0, 300);
  if (error instanceof Error) return error.name === 'AbortError' || error.name === 'TimeoutError' ? error.name : 'error';
  return 'error';
}

function abortedError(callerSignal: AbortSignal): GatewayError {
  if (callerSignal.aborted)
    return new GatewayError('The request was cancelled by the client.', { status: 499, type: 'api_error', code: 'cancelled' });
  return new GatewayError('The generation took too long and was abandoned; you were not charged. Try `stream: true` or a smaller size.', {
    status: 504,
    type: 'api_error',
    code: 'timeout',
  });
}
