import { parseArgs } from 'node:util';
import { loadCatalogFile } from '../catalog/catalog.ts';
import { loadConfig, ConfigError } from '../config/config.ts';
import { GatewayError } from '../domain/errors.ts';
import { builtInAdapters } from '../providers/index.ts';
import { ProviderRegistry } from '../providers/registry.ts';
import { AccountService, accountJson, keyJson, ledgerJson, usageJson } from '../services/accounts.ts';
import { openStore } from '../store/open-store.ts';
import { MemoryAttemptCounter } from '../limits/attempts.ts';
import { DashboardUsers, userJson } from '../services/dashboard-users.ts';

/**
 * Operator tasks against the configured database (DATABASE_URL), the same operations as /admin/v1.
 * Output is JSON on stdout; errors go to stderr with exit code 1 (usage errors: 2).
 */
const USAGE = `Usage: deepshi <command> [options]

  accounts create --name <name> [--credits <usd>]
  accounts show <account-id>
  accounts list
  credits add <account-id> <usd> [--note <text>]
  ledger <account-id> [--limit <n>]
  usage <account-id> [--limit <n>]
  keys create <account-id> [--name <name>] [--models <id,id,...>]
  keys list <account-id>
  keys rotate <key-id>
  keys revoke <key-id>
  keys delete <key-id>
  keys models <key-id> <id,id,...|all>
  keys limits <key-id> [--rpm <n>] [--ipm <n>] [--in-flight <n>] [--tpm <n>] [--max-queued-jobs <n>]
                    per-key limits: requests/min, images/min, concurrent generations, tokens/min (text models),
                    async image jobs queued or running at once
                    (0 = unlimited, "default" = the server default; omitted = unchanged)
  users create --email <email> [--account <account-id>] [--role member|operator] [--password <pw>]
                    a dashboard sign-in; without --password the password is read from stdin
                    (so it stays out of the shell history and the process list)
  users list [--account <account-id>]
  models            the catalog, and which models this configuration can serve

Reads DATABASE_URL (default sqlite:./data/deepshi.db) and DEEPSHI_CATALOG like the server.
Amounts are USD ("10", "2.50"). A new or rotated key is printed once; it is stored only as a hash.`;

export async function runCli(argv: string[], out: (text: string) => void = (text) => process.stdout.write(`${text}\n`)): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      credits: { type: 'string' },
      note: { type: 'string' },
      limit: { type: 'string' },
      models: { type: 'string' },
      rpm: { type: 'string' },
      ipm: { type: 'string' },
      'in-flight': { type: 'string' },
      email: { type: 'string' },
      password: { type: 'string' },
      account: { type: 'string' },
      role: { type: 'string' },
      tpm: { type: 'string' },
      'max-queued-jobs': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [group, action, ...rest] = positionals;
  if (values.help || !group) {
    out(USAGE);
    return values.help ? 0 : 2;
  }
  const config = loadConfig();
  if (group === 'models') {
    const catalog = loadCatalogFile(config.catalogPath);
    const registry = new ProviderRegistry(builtInAdapters(), config.env);
    out(
      JSON.stringify(
        catalog.list().map((model) => {
          const availability = registry.availability(model);
          return { id: model.id, available: availability.routes.length > 0, reason: availability.unavailableReason ?? null };
        }),
        null,
        2,
      ),
    );
    return 0;
  }
  const store = await openStore(config.databaseUrl);
  const accounts = new AccountService(store, config.keyPepper);
  const limit = values.limit ? Number(values.limit) : 50;
  const print = (value: unknown) => out(JSON.stringify(value, null, 2));
  const need = (value: string | undefined, what: string): string => {
    if (!value) throw new UsageError(`missing ${what}`);
    return value;
  };
  const modelList = (text: string | undefined) =>
    text === undefined || text === 'all'
      ? null
      : text
          .split(',')
          .map((id) => id.trim())
          .filter(Boolean);
  try {
    switch (`${group} ${action ?? ''}`.trim()) {
      case 'accounts create':
        print(accountJson(await accounts.createAccount({ name: need(values.name, '--name'), credits: values.credits ?? '0' })));
        break;
      case 'accounts show': {
        const account = await accounts.getAccount(need(rest[0], '<account-id>'));
        print({ ...accountJson(account), keys: (await accounts.listKeys(account.id)).map((key) => keyJson(key)) });
        break;
      }
      case 'accounts list':
        print((await store.listAccounts()).map(accountJson));
        break;
      case 'credits add':
        print(accountJson(await accounts.addCredits(need(rest[0], '<account-id>'), { amount: need(rest[1], '<usd>'), note: values.note })));
        break;
      case 'keys create': {
        const { record, key } = await accounts.createKey({
          account_id: need(rest[0], '<account-id>'),
          name: values.name,
          models: modelList(values.models),
        });
        print(keyJson(record, key));
        break;
      }
      case 'keys list':
        print((await accounts.listKeys(need(rest[0], '<account-id>'))).map((key) => keyJson(key)));
        break;
      case 'keys rotate': {
        const { record, key } = await accounts.rotateKey(need(rest[0], '<key-id>'));
        print(keyJson(record, key));
        break;
      }
      case 'keys revoke':
        print(keyJson(await accounts.revokeKey(need(rest[0], '<key-id>'))));
        break;
      case 'keys delete':
        await accounts.deleteKey(need(rest[0], '<key-id>'));
        print({ id: rest[0], deleted: true });
        break;
      case 'keys limits': {
        const limits: Record<string, unknown> = {};
        const limit = (option: 'rpm' | 'ipm' | 'in-flight' | 'tpm' | 'max-queued-jobs', name: string) => {
          const flag = values[option];
          if (flag === undefined) return;
          if (flag === 'default') limits[name] = null;
          else if (/^\d+$/.test(flag)) limits[name] = Number(flag);
          else throw new UsageError(`--${option} takes a whole number or "default"; got "${flag}"`);
        };
        limit('rpm', 'requests_per_minute');
        limit('ipm', 'images_per_minute');
        limit('in-flight', 'max_in_flight');
        limit('tpm', 'tokens_per_minute');
        limit('max-queued-jobs', 'max_queued_jobs');
        print(keyJson(await accounts.setKeyLimits(need(rest[0], '<key-id>'), limits)));
        break;
      }
      case 'users create': {
        const users = new DashboardUsers({
          store,
          attempts: new MemoryAttemptCounter(),
          keyPepper: config.keyPepper,
          adminToken: config.adminToken,
          sessionTtlMs: config.sessionTtlMs,
          signup: { open: config.signupOpen, credits: 0n },
        });
        const password = values.password ?? (await readPassword());
        const user = await users.createUser({
          account_id: values.account,
          email: need(values.email, '--email'),
          password,
          role: values.role,
        });
        print({ ...userJson(user), created_at: Math.floor(user.createdAt / 1000) });
        break;
      }
      case 'users list':
        print(
          (await store.dashboard.listUsers(values.account)).map((user) => ({
            ...userJson(user),
            created_at: Math.floor(user.createdAt / 1000),
          })),
        );
        break;
      case 'keys models':
        print(keyJson(await accounts.setKeyModels(need(rest[0], '<key-id>'), modelList(need(rest[1], '<id,id,...|all>')))));
        break;
      default:
        if (group === 'ledger') {
          print((await accounts.ledger(need(action, '<account-id>'), limit)).map(ledgerJson));
          break;
        }
        if (group === 'usage') {
          print((await accounts.usage(need(action, '<account-id>'), limit)).map(usageJson));
          break;
        }
        throw new UsageError(`unknown command "${positionals.join(' ')}"`);
    }
    return 0;
  } finally {
    await store.close();
  }
}

class UsageError extends Error {}

/** The first line of stdin, without its line break. */
async function readPassword(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) {
    text += String(chunk);
    if (text.includes('\n')) break;
  }
  return text.split(/\r?\n/)[0];
}

const isMain = process.argv[1] && /deepshi(\.mjs|\.ts)?$/.test(process.argv[1]);
if (isMain) {
  runCli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error) => {
      if (error instanceof UsageError) {
        process.stderr.write(`deepshi: ${error.message}\n\n${USAGE}\n`);
        process.exit(2);
      }
      if (error instanceof GatewayError || error instanceof ConfigError) {
        process.stderr.write(`deepshi: ${error.message}\n`);
        process.exit(1);
      }
      process.stderr.write(`deepshi: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
