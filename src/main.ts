import { CatalogError } from './catalog/catalog.ts';
import { ConfigError, loadConfig } from './config/config.ts';
import { startServer } from './server.ts';

async function main() {
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let stopping = false;
  const shutDown = () => void server!.close().then(() => process.exit(0));
  // Installed before start-up: "Server listening" is logged inside startServer, and a SIGTERM right after it (a
  // supervisor, a test) must still drain and exit 0 instead of ending the process with Node's default handler.
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`deepshi: ${signal} received; finishing in-flight requests\n`);
    if (server) shutDown();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  try {
    const config = loadConfig();
    server = await startServer(config, { guardProcess: true });
    if (stopping) return shutDown();
    const base = server.url.replace('0.0.0.0', 'localhost').replace('[::]', 'localhost');
    if (server.devKey) {
      // Printed once, to the terminal only (never to the logs): it is not stored anywhere in clear.
      process.stdout.write(
        `\n  Deepshi created a development account with $${config.devAccountCredits} of credit. Its API key (shown once):\n\n` +
          `    ${server.devKey}\n\n  Try it:\n\n` +
          `    curl ${base}/v1/images/generations -H "Authorization: Bearer ${server.devKey}" \\\n` +
          `      -H "Content-Type: application/json" -d '{"model":"deepshi-sketch","prompt":"a red fox in the snow"}'\n\n` +
          `  and chat with the offline text model:\n\n` +
          `    curl ${base}/v1/chat/completions -H "Authorization: Bearer ${server.devKey}" \\\n` +
          `      -H "Content-Type: application/json" -d '{"model":"deepshi-echo","messages":[{"role":"user","content":"hello"}]}'\n\n` +
          (server.devSignIn
            ? `  The dashboard: ${base}/\n  Sign in as ${server.devSignIn.email} with the password (shown once): ${server.devSignIn.password}\n\n`
            : ''),
      );
    }
  } catch (error) {
    if (error instanceof ConfigError || error instanceof CatalogError) {
      process.stderr.write(`deepshi: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

await main();
