import type { Store } from './types.ts';
import { SqliteStore } from './sqlite/sqlite-store.ts';

/** Picks the store from DATABASE_URL: `sqlite:<file>` (or a bare *.db path) or `postgres://…`. */
export async function openStore(databaseUrl: string): Promise<Store> {
  if (/^postgres(ql)?:\/\//.test(databaseUrl)) {
    const { PostgresStore } = await import('./postgres/postgres-store.ts');
    return PostgresStore.connect(databaseUrl);
  }
  const filename = databaseUrl.startsWith('sqlite:') ? databaseUrl.slice('sqlite:'.length) : databaseUrl;
  return new SqliteStore(filename || ':memory:');
}
