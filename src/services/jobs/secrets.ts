import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

/** Keys derived from the server secret, one per purpose, so a link signature can never double as anything else. */
export class ServerKeys {
  private readonly linkKey: Buffer;
  private readonly sealKey: Buffer;

  constructor(serverSecret: string) {
    const derive = (purpose: string) => Buffer.from(hkdfSync('sha256', serverSecret, 'deepshi', purpose, 32));
    this.linkKey = derive('result-links');
    this.sealKey = derive('webhook-secrets');
  }

  /** HMAC-SHA256 of the file id and its expiry (Unix seconds), base64url. */
  signLink(fileId: string, expires: number): string {
    return createHmac('sha256', this.linkKey).update(`${fileId}.${expires}`).digest('base64url');
  }

  /** Constant-time check of a link's signature. */
  verifyLink(fileId: string, expires: number, signature: string): boolean {
    const expected = Buffer.from(this.signLink(fileId, expires));
    const given = Buffer.from(signature);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** AES-256-GCM: `v1.<iv>.<tag>.<ciphertext>` (base64url), what the database stores instead of the secret. */
  seal(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.sealKey, iv);
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join('.');
  }

  unseal(sealed: string): string {
    const [version, iv, tag, body] = sealed.split('.');
    if (version !== 'v1' || !iv || !tag || body === undefined) throw new Error('unreadable sealed secret');
    const decipher = createDecipheriv('aes-256-gcm', this.sealKey, Buffer.from(iv, 'base64url'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
  }
}
