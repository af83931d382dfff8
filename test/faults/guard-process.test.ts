import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { it } from 'node:test';

/**
 * guardProcess (src/server.ts, installed by src/main.ts): an error nothing listened for is logged at error level and
 * the process keeps serving. Without it Node ends the process on the first such error, dropping every request in flight.
 */
it('an uncaught stream error, a thrown timer callback and an unhandled rejection are logged at error level; the process lives on', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'guard-process-child.ts')], {
    cwd: path.resolve(import.meta.dirname, '../..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, `the child exited with ${code}: ${stderr}`);
  const lines = stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
  assert.equal(lines.at(-1).msg, 'still alive');
  const errors = lines.filter((line) => line.level === 50);
  assert.deepEqual(
    errors.map((line) => line.err?.code ?? line.err?.message).sort(),
    ['UND_ERR_ABORTED', 'a rejection nobody awaited', 'a stray error in a timer'].sort(),
  );
});
