import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Dashboard passwords: scrypt (memory-hard, in node:crypto) with a per-user 16-byte salt. The stored string carries
 * its parameters, `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>`, so they can be raised later without breaking old hashes.
 * N = 2^15, r = 8 uses 32 MiB and about 50-100 ms of one core per hash (OWASP's scrypt minimum is N = 2^17 with r = 8
 * at p = 1 for 128 MiB; 2^15 keeps concurrent sign-ins from exhausting a small server's memory, and sign-in attempts
 * are throttled per email and per IP).
 */
export const PASSWORD_PARAMS = { N: 2 ** 15, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;

function derive(password: string, salt: Buffer, params: { N: number; r: number; p: number }): Promise<Buffer> {
  const options: ScryptOptions = { ...params, maxmem: 256 * params.N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, KEY_LENGTH, options, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

export async function hashPassword(password: string, params: { N: number; r: number; p: number } = PASSWORD_PARAMS): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, params);
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  const expected = Buffer.from(parts[5], 'base64');
  const key = await derive(password, Buffer.from(parts[4], 'base64'), { N, r, p });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** A hash of a password nobody has, checked for unknown emails so that they take as long as a wrong password. */
let decoy: Promise<string> | undefined;
export function decoyPasswordHash(): Promise<string> {
  decoy ??= hashPassword(randomBytes(16).toString('hex'));
  return decoy;
}

/** Session tokens and credit codes carry ≥ 128 bits of randomness: SHA-256 is the right digest, no slow hash needed. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
