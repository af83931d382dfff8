import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';

/**
 * Deepshi API keys: `sk-bf-` + 40 base62 characters of secret (≈238 bits) + a 6-character base62 CRC32
 * checksum of everything before it (GitHub's token scheme). The checksum lets malformed or mistyped keys be
 * refused without touching the database, and lets secret scanners recognise leaked keys offline.
 * Only an HMAC-SHA256 of the key (peppered when DEEPSHI_KEY_PEPPER is set) is stored: with this much entropy
 * a slow hash buys nothing and would cost milliseconds on every request.
 */
export const KEY_PREFIX = 'sk-bf-';
const SECRET_LENGTH = 40;
const CHECKSUM_LENGTH = 6;
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const KEY_PATTERN = new RegExp(`^${KEY_PREFIX}[0-9A-Za-z]{${SECRET_LENGTH + CHECKSUM_LENGTH}}$`);

export interface IssuedKey {
  /** The full key, shown once. */
  key: string;
  hash: string;
  display: string;
}

export function issueApiKey(pepper: string): IssuedKey {
  const bytes = randomBytes(SECRET_LENGTH);
  let secret = '';
  // 256 % 62 bias is avoided by rejection: bytes ≥ 248 are redrawn.
  for (let index = 0; secret.length < SECRET_LENGTH; index++) {
    const byte = index < bytes.length ? bytes[index] : randomBytes(1)[0];
    if (byte < 248) secret += BASE62[byte % 62];
  }
  const body = KEY_PREFIX + secret;
  const key = body + checksum(body);
  return { key, hash: hashApiKey(key, pepper), display: displayKey(key) };
}

/** Offline check: prefix, length, alphabet and checksum. */
export function isWellFormedApiKey(key: string): boolean {
  if (!KEY_PATTERN.test(key)) return false;
  const body = key.slice(0, -CHECKSUM_LENGTH);
  return checksum(body) === key.slice(-CHECKSUM_LENGTH);
}

export function hashApiKey(key: string, pepper: string): string {
  return pepper ? createHmac('sha256', pepper).update(key).digest('hex') : createHash('sha256').update(key).digest('hex');
}

export function displayKey(key: string): string {
  return `${key.slice(0, KEY_PREFIX.length + 4)}…${key.slice(-4)}`;
}

export function newKeyId(): string {
  return `key_${randomUUID().replace(/-/g, '').slice(0, 20)}`;
}

function checksum(text: string): string {
  let value = crc32(Buffer.from(text, 'utf8'));
  let out = '';
  for (let index = 0; index < CHECKSUM_LENGTH; index++) {
    out = BASE62[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
