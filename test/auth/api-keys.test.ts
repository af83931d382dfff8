import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { displayKey, hashApiKey, isWellFormedApiKey, issueApiKey } from '../../src/auth/api-keys.ts';

describe('API key format', () => {
  it('issues sk-bf- keys with a checksum that validates offline', () => {
    const keys = Array.from({ length: 200 }, () => issueApiKey(''));
    for (const { key } of keys) {
      assert.match(key, /^sk-bf-[0-9A-Za-z]{46}$/);
      assert.ok(isWellFormedApiKey(key));
    }
    assert.equal(new Set(keys.map(({ key }) => key)).size, 200);
  });

  it('refuses any single-character change, wrong prefixes and lengths', () => {
    const { key } = issueApiKey('');
    for (let index = 6; index < key.length; index++) {
      const changed = key.slice(0, index) + (key[index] === 'a' ? 'b' : 'a') + key.slice(index + 1);
      assert.equal(isWellFormedApiKey(changed), false, `change at ${index}`);
    }
    assert.equal(isWellFormedApiKey(key.replace('sk-bf-', 'sk-xx-')), false);
    assert.equal(isWellFormedApiKey(`${key}a`), false);
    assert.equal(isWellFormedApiKey(''), false);
  });

  it('stores only a hash (peppered when configured) and displays only the ends', () => {
    const issued = issueApiKey('pepper');
    assert.equal(issued.hash, hashApiKey(issued.key, 'pepper'));
    assert.notEqual(issued.hash, hashApiKey(issued.key, ''));
    assert.ok(!issued.hash.includes(issued.key.slice(6)));
    assert.equal(displayKey(issued.key), `${issued.key.slice(0, 10)}…${issued.key.slice(-4)}`);
  });
});
