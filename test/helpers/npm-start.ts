import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * The node arguments `npm start` runs (package.json "start": `node <args>`, the compiled dist/main.js that
 * `npm test` builds first), so every test that starts a real server process runs exactly what an operator runs.
 */
export function npmStartArgs(): string[] {
  const start: string = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.start;
  const [command, ...args] = start.split(/\s+/);
  assert.equal(command, 'node', 'npm start runs node');
  return args;
}
