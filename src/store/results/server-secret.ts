import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * The server secret that signs result links and seals webhook secrets: DEEPSHI_SERVER_SECRET when set (required with
 * PostgreSQL, where every instance must share it); otherwise, for the embedded SQLite default, a random one kept in
 * `<data dir>/server-secret` (mode 0600), created on first start.
 */
export function resolveServerSecret(configured: string | undefined, dataDir: string, storeKind: 'sqlite' | 'postgres'): string {
  if (configured) return configured;
  if (storeKind === 'postgres') {
    throw new Error(
      'DEEPSHI_SERVER_SECRET must be set with PostgreSQL: every instance signs result links and seals webhook secrets with it (use e.g. `openssl rand -hex 32`).',
    );
  }
  const file = path.join(dataDir, 'server-secret');
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  fs.mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('hex');
  try {
    fs.writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return secret;
  } catch (error) {
    // Another process created it first: use theirs.
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return fs.readFileSync(file, 'utf8').trim();
    throw error;
  }
}
