import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

/**
 * The layering rules of .dependency-cruiser.cjs (run by `npm run lint`) as a specification: the tree keeps them, and
 * each kind of forbidden import, written into a scratch copy of the layout, fails the check.
 */
const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');
const CONFIG = path.join(ROOT, '.dependency-cruiser.cjs');

function cruise(cwd: string, ...targets: string[]): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [CLI, ...targets, '--config', CONFIG, '--output-type', 'err'], { cwd, encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** A scratch tree with the repository's folder names, holding the given files (path → source). */
function scratch(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-layers-'));
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', allowImportingTsExtensions: true, noEmit: true },
    }),
  );
  for (const [file, source] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), source);
  }
  dirs.push(dir);
  return dir;
}
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('layering rules (dependency-cruiser)', () => {
  it('the source tree keeps every rule', () => {
    const result = cruise(ROOT, 'src');
    assert.equal(result.status, 0, result.output);
  });

  const forbidden: Array<[rule: string, files: Record<string, string>]> = [
    [
      'providers-stay-in-their-room',
      {
        'src/providers/x/adapter.ts': "import type { Store } from '../../store/types.ts';\nexport type A = Store;\n",
        'src/store/types.ts': 'export interface Store { id: string }\n',
      },
    ],
    [
      'lower-layers-not-up',
      {
        'src/store/types.ts': "import { run } from '../services/runner.ts';\nexport const s = run;\n",
        'src/services/runner.ts': 'export const run = 1;\n',
      },
    ],
    [
      'http-through-services',
      {
        'src/http/routes/x.ts': "import type { Store } from '../../store/types.ts';\nexport type S = Store;\n",
        'src/store/types.ts': 'export interface Store { id: string }\n',
      },
    ],
    [
      'services-not-http',
      {
        'src/services/x.ts': "import { send } from '../http/sse.ts';\nexport const s = send;\n",
        'src/http/sse.ts': 'export const send = 1;\n',
      },
    ],
    [
      'domain-is-the-floor',
      {
        'src/domain/x.ts': "import { c } from '../catalog/catalog.ts';\nexport const d = c;\n",
        'src/catalog/catalog.ts': 'export const c = 1;\n',
      },
    ],
    [
      'only-the-root-wires-concretes',
      {
        'src/services/x.ts': "import { openStore } from '../store/open-store.ts';\nexport const s = openStore;\n",
        'src/store/open-store.ts': 'export const openStore = 1;\n',
      },
    ],
    [
      'no-circular',
      {
        'src/services/a.ts': "import { b } from './b.ts';\nexport const a = () => b;\n",
        'src/services/b.ts': "import { a } from './a.ts';\nexport const b = () => a;\n",
      },
    ],
  ];
  for (const [rule, files] of forbidden) {
    it(`a forbidden import fails the check: ${rule}`, () => {
      const result = cruise(scratch(files), 'src');
      assert.notEqual(result.status, 0, result.output);
      assert.match(result.output, new RegExp(`error ${rule}:`));
    });
  }

  it('an allowed import passes (services → store types, http → services)', () => {
    const dir = scratch({
      'src/services/x.ts': "import type { Store } from '../store/types.ts';\nexport type S = Store;\n",
      'src/store/types.ts': 'export interface Store { id: string }\n',
      'src/http/routes/y.ts': "import type { S } from '../../services/x.ts';\nexport type T = S;\n",
    });
    const result = cruise(dir, 'src');
    assert.equal(result.status, 0, result.output);
  });
});

describe('module size', () => {
  it('no file in src/ is over 400 lines (split it by what its parts are)', () => {
    const long = fs
      .readdirSync(path.join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts'))
      .map((file) => ({ file, lines: fs.readFileSync(path.join(ROOT, 'src', file), 'utf8').split('\n').length - 1 }))
      .filter(({ lines }) => lines > 400);
    assert.deepEqual(long, []);
  });
});
