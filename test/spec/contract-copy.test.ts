import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';

/** spec/openapi.yaml is the published contract, copied verbatim; it must not drift from the source. */
const copy = path.resolve(import.meta.dirname, '../../spec/openapi.yaml');
const source = path.resolve(import.meta.dirname, '../../../shared/spec/openapi.yaml');

it('spec/openapi.yaml is identical to the published contract', {
  skip: fs.existsSync(source) ? false : 'the published contract (../shared/spec) is not beside this checkout',
}, () => {
  assert.equal(fs.readFileSync(copy, 'utf8'), fs.readFileSync(source, 'utf8'));
});
