/** Every failure a caller can see. Rendered in one place (src/http/error-handler.ts) as the OpenAI envelope. */
export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'insufficient_quota'
  | 'rate_limit_error'
  | 'not_found_error'
  | 'api_error';

export interface GatewayErrorOptions {
  status: number;
  type: ErrorType;
  code?: string | null;
  param?: string | null;
  headers?: Record<string, string>;
  cause?: unknown;
}

export class GatewayError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly code: string | null;
  readonly param: string | null;
  readonly headers: Record<string, string>;

  constructor(message: string, options: GatewayErrorOptions) {
    super(message, { cause: options.cause });
    this.name = 'GatewayError';
    this.status = options.status;
    this.type = options.type;
    this.code = options.code ?? null;
    this.param = options.param ?? null;
    this.headers = options.headers ?? {};
  }

  toEnvelope() {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

export const invalidRequest = (message: string, param: string | null, code = 'invalid_value') =>
  new GatewayError(message, { status: 400, type: 'invalid_request_error', code, param });

export const missingParam = (param: string) =>
  new GatewayError(`Missing required parameter: '${param}'.`, {
    status: 400,
    type: 'invalid_request_error',
    code: 'missing_required_parameter',
    param,
  });

export const modelNotFound = (status: 400 | 403 | 404 = 400) =>
  new GatewayError('The model does not exist or you do not have access to it.', {
    status,
    type: 'invalid_request_error',
    code: 'model_not_found',
    param: status === 400 ? 'model' : null,
  });

export const invalidApiKey = (message = 'Incorrect API key provided.') =>
  new GatewayError(message, { status: 401, type: 'invalid_request_error', code: 'invalid_api_key' });

export const revokedApiKey = () =>
  new GatewayError('This API key has been revoked. Use an active key, or create a new one.', {
    status: 403,
    type: 'invalid_request_error',
    code: 'api_key_revoked',
  });

export const insufficientQuota = () =>
  new GatewayError('You have insufficient credits to complete this request.', {
    status: 402,
    type: 'insufficient_quota',
    code: 'insufficient_quota',
  });

export const rateLimited = (message: string, retryAfterSeconds: number, headers: Record<string, string> = {}) =>
  new GatewayError(message, {
    status: 429,
    type: 'rate_limit_error',
    code: 'rate_limit_exceeded',
    headers: { 'retry-after': String(Math.min(60, Math.max(1, Math.ceil(retryAfterSeconds)))), ...headers },
  });

export const internalError = (cause?: unknown) =>
  new GatewayError('The server had an error while processing your request. Please retry.', {
    status: 500,
    type: 'api_error',
    cause,
  });

export const contentPolicyViolation = (message: string) =>
  new GatewayError(message, { status: 400, type: 'invalid_request_error', code: 'content_policy_violation' });

export const upstreamFailure = (message: string, status = 502, cause?: unknown) =>
  new GatewayError(message, { status, type: 'api_error', code: 'upstream_error', cause });
