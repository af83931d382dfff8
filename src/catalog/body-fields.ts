import { GatewayError, invalidRequest } from '../domain/errors.ts';

/**
 * Readers for one field of a request body, 400 with the field as `param` when it has the wrong type. `coerce` takes
 * form strings ("3", "true") as numbers and booleans: multipart edits send every field as a string.
 */

export function readInteger(body: Record<string, unknown>, name: string, coerce: boolean): number | undefined {
  const raw = body[name];
  if (raw === undefined || raw === null) return undefined;
  const value = toInteger(raw, coerce);
  if (value === undefined) throw invalidRequest(`'${name}' must be an integer.`, name, 'invalid_type');
  return value;
}

export function readBoolean(body: Record<string, unknown>, name: string, coerce: boolean): boolean | undefined {
  const raw = body[name];
  if (raw === undefined || raw === null) return undefined;
  const value = toBoolean(raw, coerce);
  if (value === undefined) throw invalidRequest(`'${name}' must be true or false.`, name, 'invalid_type');
  return value;
}

export function readEnum<T extends string>(
  body: Record<string, unknown>,
  name: string,
  allowed: readonly T[],
  _coerce: boolean,
  aliases: Record<string, T> = {},
): T | undefined {
  const raw = body[name];
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw === 'string' && (allowed as readonly string[]).includes(raw)) return raw as T;
  if (typeof raw === 'string' && Object.hasOwn(aliases, raw)) return aliases[raw];
  const names = allowed.map((value) => {
    const alias = Object.keys(aliases).find((key) => aliases[key] === value);
    return alias ? `${value} (or ${alias})` : value;
  });
  throw new GatewayError(`'${name}' must be one of ${names.join(', ')}; got ${JSON.stringify(raw).slice(0, 40)}.`, {
    status: 400,
    type: 'invalid_request_error',
    code: 'invalid_value',
    param: name,
  });
}

export function toInteger(raw: unknown, coerce: boolean): number | undefined {
  if (typeof raw === 'number') return Number.isSafeInteger(raw) ? raw : undefined;
  if (coerce && typeof raw === 'string' && /^-?\d{1,15}$/.test(raw.trim())) return Number(raw.trim());
  return undefined;
}

export function toBoolean(raw: unknown, coerce: boolean): boolean | undefined {
  if (typeof raw === 'boolean') return raw;
  if (coerce && typeof raw === 'string') {
    if (raw === 'true') return true;
    if (raw === 'false') return false;
  }
  return undefined;
}

// JSON bodies (chat): the value must already have the type.

export function readJsonInteger(raw: unknown, param: string): number | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'number' || !Number.isSafeInteger(raw)) throw invalidRequest(`'${param}' must be an integer.`, param, 'invalid_type');
  return raw;
}

export function readJsonNumber(raw: unknown, param: string, min: number, max: number): number | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'number' || !Number.isFinite(raw)) throw invalidRequest(`'${param}' must be a number.`, param, 'invalid_type');
  if (raw < min || raw > max) throw invalidRequest(`'${param}' must be between ${min} and ${max}; got ${raw}.`, param, 'invalid_value');
  return raw;
}

export function readJsonBoolean(raw: unknown, param: string): boolean | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'boolean') throw invalidRequest(`'${param}' must be true or false.`, param, 'invalid_type');
  return raw;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
