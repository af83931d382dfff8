import type { FastifyRequest } from 'fastify';
import { hashApiKey, isWellFormedApiKey } from '../auth/api-keys.ts';
import { invalidApiKey, revokedApiKey } from '../domain/errors.ts';
import type { Caller } from '../domain/caller.ts';
import type { Store } from '../store/types.ts';

/**
 * Bearer key → Caller. Malformed keys (wrong prefix, length or checksum) are refused before any lookup.
 * No cache: a revoked, rotated or deleted key, a narrowed allowlist or new limits take effect on the very next
 * request, on every instance (all of them read the one database).
 */
export async function authenticate(request: FastifyRequest, store: Store, pepper: string): Promise<Caller> {
  const header = request.headers.authorization;
  if (!header) {
    throw invalidApiKey("You didn't provide an API key. Send it as 'Authorization: Bearer sk-bf-…'.");
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) throw invalidApiKey("The Authorization header must be 'Bearer <your Deepshi API key>'.");
  const key = match[1];
  if (!isWellFormedApiKey(key)) throw invalidApiKey();
  const record = await store.findApiKeyByHash(hashApiKey(key, pepper));
  if (!record) throw invalidApiKey();
  if (record.status === 'revoked') throw revokedApiKey();
  return { keyId: record.id, accountId: record.accountId, models: record.models, limits: record.limits };
}
